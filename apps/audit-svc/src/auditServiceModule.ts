import type { ServiceModule } from '@clinical/server-kit';
import { agentContextService } from './agentContextService.js';
import { auditService } from './auditService.js';

/** audit-svc: the audit trail and the AI-agent context store. */
export const auditServiceModule: ServiceModule = {
  name: 'audit-svc',
  createServices: () => [auditService(), agentContextService()],
};
