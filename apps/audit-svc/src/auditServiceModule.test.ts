import { serviceBootSuite } from '@clinical/server-kit/testing';
import { status } from '@grpc/grpc-js';
import { auditServiceModule } from './auditServiceModule.js';

serviceBootSuite(auditServiceModule, ['clinical.audit.v1.AuditService', 'clinical.audit.v1.AgentContextService', 'clinical.audit.v1.SessionService'], {
  service: 'clinical.audit.v1.AuditService',
  method: 'GetAuditEvent',
  request: { event_id: '6f1c2a52-8a8f-4d0e-9a37-3c1f1f0f6f10' },
  expectedCode: status.NOT_FOUND,
  invalid: { method: 'GetAuditEvent', request: { event_id: 'not-a-uuid' }, field: 'event_id' },
});
