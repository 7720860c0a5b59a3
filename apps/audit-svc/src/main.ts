import { runServiceMain } from '@clinical/server-kit';
import { auditServiceModule } from './auditServiceModule.js';

await runServiceMain(auditServiceModule);
