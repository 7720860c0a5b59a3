import { ConfigError, runServiceMain } from '@clinical/server-kit';
import { loadAuditSettings } from './auditSettings.js';
import { auditServiceModule } from './auditServiceModule.js';

try {
  loadAuditSettings();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`audit-svc: ${error.message}\n`);
    process.exit(78);
  }
  throw error;
}
await runServiceMain(auditServiceModule);
