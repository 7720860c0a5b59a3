import { accessEventsOf, type AccessedEntity, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import type { AuditEventRow } from './auditEventRecord.js';

/**
 * Reads of the trail are access events too (entity_type "audit_events"): one
 * per call and patient whose events were returned, naming the first of them.
 */
export function recordTrailRead(runtime: ServiceRuntime, context: HandlerContext, rows: readonly AuditEventRow[]): void {
  const byPatient = new Map<string, AccessedEntity>();
  for (const row of rows) {
    if (row.patient_id && !byPatient.has(row.patient_id)) {
      byPatient.set(row.patient_id, { entityType: 'audit_events', entityId: row.event_id, patientId: row.patient_id });
    }
  }
  runtime.accessRecorder.record(accessEventsOf(context, [...byPatient.values()]));
}
