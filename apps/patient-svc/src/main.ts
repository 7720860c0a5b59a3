import { runServiceMain } from '@clinical/server-kit';
import { patientServiceModule } from './patientServiceModule.js';

await runServiceMain(patientServiceModule);
