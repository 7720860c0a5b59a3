import { runServiceMain } from '@clinical/server-kit';
import { vitalsServiceModule } from './vitalsServiceModule.js';

await runServiceMain(vitalsServiceModule);
