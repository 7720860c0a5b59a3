import { runServiceMain } from '@clinical/server-kit';
import { analyticsServiceModule } from './analyticsServiceModule.js';

await runServiceMain(analyticsServiceModule);
