import { sql, type CommonQueryMethods } from '@clinical/db';
import type { Principal } from '@clinical/server-kit';
import { auditEventRow, type AuditEventRow } from './auditEventRecord.js';
import { visibleEventsCondition } from './trailVisibility.js';

const EVENT_COLUMNS = sql.fragment`
  e.event_id, e.event_type, e.entity_type, e.entity_key, e.patient_id, e.user_id, e.action, e.payload,
  host(e.ip_address) AS ip_address, e.request_id, e.trace_id, e.reason, e."timestamp" AS occurred_at,
  (extract(epoch FROM e."timestamp") * 1000000)::int8 AS occurred_micros,
  c.sequence_number, encode(c.previous_hash, 'hex') AS previous_hash, encode(c.row_hash, 'hex') AS row_hash
`;

/** Filters of ListAuditEvents, normalized (stored names, lowercase UUIDs). */
export interface AuditEventFilters {
  readonly entityTypes?: readonly string[];
  readonly entityId?: string;
  readonly entityIdIsUuid?: boolean;
  readonly patientId?: string;
  readonly userId?: string;
  readonly action?: string;
  readonly eventType?: string;
  /** Inclusive lower bound. */
  readonly start?: Date;
  /** Exclusive upper bound. */
  readonly end?: Date;
}

/** Where the previous page stopped: its last event's time (epoch microseconds) and id. */
export interface AuditEventCursor {
  readonly occurredMicros: string;
  readonly eventId: string;
}

const microsToTimestamp = (micros: string) =>
  sql.fragment`(timestamptz 'epoch' + ${micros}::int8 * interval '1 microsecond')`;

/**
 * One page of events visible to `principal`, newest first (time, then
 * event_id, descending), after `cursor`; `limit` rows at most.
 */
export async function selectAuditEvents(
  db: CommonQueryMethods,
  principal: Principal,
  filters: AuditEventFilters,
  cursor: AuditEventCursor | undefined,
  limit: number,
): Promise<readonly AuditEventRow[]> {
  const conditions = [visibleEventsCondition(principal)];
  if (filters.entityTypes) {
    conditions.push(sql.fragment`e.entity_type = ANY(${sql.array([...filters.entityTypes], 'text')})`);
  }
  if (filters.entityId !== undefined) {
    conditions.push(
      filters.entityIdIsUuid
        ? sql.fragment`(e.entity_id = ${filters.entityId}::uuid OR (e.entity_id IS NULL AND e.entity_key = ${filters.entityId}))`
        : sql.fragment`(e.entity_id IS NULL AND e.entity_key = ${filters.entityId})`,
    );
  }
  if (filters.patientId !== undefined) {
    conditions.push(sql.fragment`e.patient_id = ${filters.patientId}::uuid`);
  }
  if (filters.userId !== undefined) {
    conditions.push(sql.fragment`e.user_id = ${filters.userId}`);
  }
  if (filters.action !== undefined) {
    conditions.push(sql.fragment`e.action = ${filters.action}`);
  }
  if (filters.eventType !== undefined) {
    conditions.push(sql.fragment`e.event_type = ${filters.eventType}`);
  }
  if (filters.start) {
    conditions.push(sql.fragment`e."timestamp" >= ${filters.start.toISOString()}::timestamptz`);
  }
  if (filters.end) {
    conditions.push(sql.fragment`e."timestamp" < ${filters.end.toISOString()}::timestamptz`);
  }
  if (cursor) {
    const at = microsToTimestamp(cursor.occurredMicros);
    // The first condition bounds the index scan; the row comparison breaks ties.
    conditions.push(sql.fragment`e."timestamp" <= ${at}`);
    conditions.push(sql.fragment`(e."timestamp", e.event_id) < (${at}, ${cursor.eventId}::uuid)`);
  }
  return db.any(sql.type(auditEventRow)`
    SELECT ${EVENT_COLUMNS}
      FROM audit_events AS e
      LEFT JOIN audit_chain AS c ON c.event_seq = e.event_seq
     WHERE ${sql.join(conditions, sql.fragment` AND `)}
     ORDER BY e."timestamp" DESC, e.event_id DESC
     LIMIT ${limit}
  `);
}

/** The event with this id if `principal` may see it, else null. */
export async function selectAuditEvent(
  db: CommonQueryMethods,
  principal: Principal,
  eventId: string,
): Promise<AuditEventRow | null> {
  return db.maybeOne(sql.type(auditEventRow)`
    SELECT ${EVENT_COLUMNS}
      FROM audit_events AS e
      LEFT JOIN audit_chain AS c ON c.event_seq = e.event_seq
     WHERE e.event_id = ${eventId}::uuid AND ${visibleEventsCondition(principal)}
  `);
}
