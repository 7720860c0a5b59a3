import { serviceBootSuite } from '@clinical/server-kit/testing';
import { status } from '@grpc/grpc-js';
import { auditServiceModule } from './auditServiceModule.js';

serviceBootSuite(auditServiceModule, ['clinical.audit.v1.AuditService', 'clinical.audit.v1.AgentContextService'], {
  service: 'clinical.audit.v1.AuditService',
  method: 'VerifyAuditTrail',
  request: {},
  expectedCode: status.UNIMPLEMENTED,
});
