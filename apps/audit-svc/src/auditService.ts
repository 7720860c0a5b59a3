import { auditV1 } from '@clinical/contracts';
import { defineService, notYetServed, type ServiceBinding } from '@clinical/server-kit';

const AUDITORS = ['auditor', 'admin'] as const;

/** clinical.audit.v1.AuditService: only auditors (and admins) read the trail. */
export function auditService(): ServiceBinding {
  return defineService(
    auditV1.AuditServiceDefinition,
    {
      listAuditEvents: notYetServed('ListAuditEvents'),
      getAuditEvent: notYetServed('GetAuditEvent'),
      verifyAuditTrail: notYetServed('VerifyAuditTrail'),
      purgeExpiredAuditEvents: notYetServed('PurgeExpiredAuditEvents'),
    },
    {
      listAuditEvents: { roles: AUDITORS, cost: 5 },
      getAuditEvent: { roles: AUDITORS, cost: 1 },
      verifyAuditTrail: { roles: AUDITORS, cost: 100 },
      purgeExpiredAuditEvents: { roles: ['admin'], cost: 100 },
    },
  );
}
