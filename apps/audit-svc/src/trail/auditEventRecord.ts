import { auditV1 } from '@clinical/contracts';
import { z } from 'zod/v4';

const { AuditAction, AuditEventType } = auditV1;

/** Stored event_type names by contract enum. */
export const EVENT_TYPE_NAMES = new Map<auditV1.AuditEventType, string>([
  [AuditEventType.AUDIT_EVENT_TYPE_DATA_CHANGE, 'DATA_CHANGE'],
  [AuditEventType.AUDIT_EVENT_TYPE_DATA_ACCESS, 'DATA_ACCESS'],
  [AuditEventType.AUDIT_EVENT_TYPE_ADMINISTRATIVE, 'ADMINISTRATIVE'],
  [AuditEventType.AUDIT_EVENT_TYPE_ACCESS_DENIED, 'ACCESS_DENIED'],
]);
const eventTypeByName = new Map([...EVENT_TYPE_NAMES].map(([type, name]) => [name, type]));

/** Stored action names by contract enum. */
export const ACTION_NAMES = new Map<auditV1.AuditAction, string>([
  [AuditAction.AUDIT_ACTION_INSERT, 'INSERT'],
  [AuditAction.AUDIT_ACTION_UPDATE, 'UPDATE'],
  [AuditAction.AUDIT_ACTION_DELETE, 'DELETE'],
  [AuditAction.AUDIT_ACTION_READ, 'READ'],
  [AuditAction.AUDIT_ACTION_PURGE, 'PURGE'],
  [AuditAction.AUDIT_ACTION_AUTHENTICATE, 'AUTHENTICATE'],
  [AuditAction.AUDIT_ACTION_AUTHORIZE, 'AUTHORIZE'],
]);
const actionByName = new Map([...ACTION_NAMES].map(([action, name]) => [name, action]));

/**
 * The contract names events by table ("patients", "mcp_context"); the
 * triggers and recorders store the entity's name ("patient",
 * "agent_context"). Reads translate one way, filters the other.
 */
const TABLE_OF_STORED = new Map<string, string>([
  ['patient', 'patients'],
  ['document', 'documents'],
  ['vital_signs', 'vital_signs'],
  ['agent_context', 'mcp_context'],
  ['audit_events', 'audit_events'],
  ['session', 'sessions'],
]);

/** Stored entity_type values a filter by `entityType` (a table name, or a stored name) matches. */
export function storedEntityTypes(entityType: string): string[] {
  const stored = [...TABLE_OF_STORED].filter(([, table]) => table === entityType).map(([name]) => name);
  return stored.length > 0 ? [...new Set([...stored, entityType])] : [entityType];
}

/** An audit event as the service selects it, with its chain entry if it has one (zod 4: see rowSchema). */
export const auditEventFields = z.object({
  // guid: any 8-4-4-4-12 hex text, as zod 3's uuid() accepted (zod 4's uuid() also checks the version).
  event_id: z.guid(),
  event_type: z.string(),
  entity_type: z.string(),
  entity_key: z.string().nullable(),
  patient_id: z.guid().nullable(),
  user_id: z.string(),
  action: z.string(),
  payload: z.unknown(),
  ip_address: z.string().nullable(),
  request_id: z.string().nullable(),
  trace_id: z.string().nullable(),
  reason: z.string().nullable(),
  occurred_at: z.date(),
  /** Epoch microseconds: the sort key at full precision, for page tokens. */
  occurred_micros: z.string(),
  sequence_number: z.string().nullable(),
  previous_hash: z.string().nullable(),
  row_hash: z.string().nullable(),
});
export type AuditEventRow = z.infer<typeof auditEventFields>;

/** The contract's AuditEvent of a row. */
export function toAuditEventMessage(row: AuditEventRow): auditV1.AuditEvent {
  const isObject = typeof row.payload === 'object' && row.payload !== null && !Array.isArray(row.payload);
  return {
    eventId: row.event_id,
    sequenceNumber: row.sequence_number ?? '0',
    eventType: eventTypeByName.get(row.event_type) ?? AuditEventType.AUDIT_EVENT_TYPE_UNSPECIFIED,
    entityType: TABLE_OF_STORED.get(row.entity_type) ?? row.entity_type,
    // vital_signs events cover every reading one statement wrote for a patient: no single row.
    entityId: row.entity_type === 'vital_signs' && row.event_type === 'DATA_CHANGE' ? '' : (row.entity_key ?? ''),
    patientId: row.patient_id ?? '',
    userId: row.user_id,
    action: actionByName.get(row.action) ?? AuditAction.AUDIT_ACTION_UNSPECIFIED,
    payload: isObject ? (row.payload as Record<string, unknown>) : { value: row.payload ?? null },
    ipAddress: row.ip_address ?? '',
    requestId: row.request_id ?? '',
    traceId: row.trace_id ?? '',
    reason: row.reason ?? '',
    occurTime: row.occurred_at,
    previousHash: row.previous_hash ?? '',
    rowHash: row.row_hash ?? '',
  };
}
