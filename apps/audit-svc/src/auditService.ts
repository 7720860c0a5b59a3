import { auditV1 } from '@clinical/contracts';
import { auditServicePolicies } from '@clinical/method-policies';
import { defineService, type ServiceBinding, type ServiceRuntime } from '@clinical/server-kit';
import type { AuditSettings } from './auditSettings.js';
import { getAuditEventHandler } from './trail/getAuditEvent.js';
import { listAuditEventsHandler } from './trail/listAuditEvents.js';
import { purgeExpiredAuditEventsHandler } from './trail/purgeExpiredAuditEvents.js';
import { verifyAuditTrailHandler } from './trail/verifyAuditTrail.js';

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
    auditServicePolicies,
  );
}
