import { auditV1 } from '@clinical/contracts';
import { defineService, type ServiceBinding, type ServiceRuntime } from '@clinical/server-kit';
import type { AuditSettings } from './auditSettings.js';
import { getAuditEventHandler } from './trail/getAuditEvent.js';
import { listAuditEventsHandler } from './trail/listAuditEvents.js';
import { purgeExpiredAuditEventsHandler } from './trail/purgeExpiredAuditEvents.js';
import { verifyAuditTrailHandler } from './trail/verifyAuditTrail.js';

const AUDITORS = ['auditor', 'admin'] as const;

/** clinical.audit.v1.AuditService: only auditors (and admins) read the trail. */
export function auditService(runtime: ServiceRuntime, settings: AuditSettings): ServiceBinding {
  return defineService(
    auditV1.AuditServiceDefinition,
    {
      listAuditEvents: listAuditEventsHandler(runtime),
      getAuditEvent: getAuditEventHandler(runtime),
      verifyAuditTrail: verifyAuditTrailHandler(runtime, settings),
      purgeExpiredAuditEvents: purgeExpiredAuditEventsHandler(runtime, settings),
    },
    {
      listAuditEvents: { roles: AUDITORS, cost: 5 },
      getAuditEvent: { roles: AUDITORS, cost: 1 },
      verifyAuditTrail: { roles: AUDITORS, cost: 100 },
      purgeExpiredAuditEvents: { roles: ['admin'], cost: 100 },
    },
  );
}
