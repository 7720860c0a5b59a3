import { rowSchema, sql, type CommonQueryMethods } from '@clinical/db';
import type { Principal } from '@clinical/server-kit';
import { z } from 'zod/v4';
import { auditEventFields, type AuditEventRow } from './auditEventRecord.js';
import { visibleEventsCondition } from './trailVisibility.js';

const EVENT_COLUMNS = sql.fragment`
  e.event_id, e.event_type, e.entity_type, e.entity_key, e.patient_id, e.user_id, e.action, e.payload,
  host(e.ip_address) AS ip_address, e.request_id, e.trace_id, e.reason, e."timestamp" AS occurred_at,
  (extract(epoch FROM e."timestamp") * 1000000)::int8 AS occurred_micros,
  c.sequence_number, encode(c.previous_hash, 'hex') AS previous_hash, encode(c.row_hash, 'hex') AS row_hash
`;

const auditEventRow = rowSchema(auditEventFields);
const auditEventPageRow = rowSchema(auditEventFields.extend({ more: z.boolean(), payload_bytes: z.number() }));

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
 * Most payload bytes (`payload_bytes`, the jsonb text's length) a page
 * carries: a page ends before the event that would take it beyond this sum,
 * unless that event is the page's first (a page always holds one event). An
 * event about a document holds its old and new content (up to 1 MiB each), so
 * a page of the default 100 events could otherwise reach hundreds of MiB in
 * this service's heap and exceed gRPC's 4 MiB default message size at the
 * client; 3 MiB leaves room under it for the events' other fields.
 */
export const PAGE_PAYLOAD_BUDGET_BYTES = 3 * 1024 * 1024;

/** One page of ListAuditEvents: its events, and whether any visible event follows them. */
export interface AuditEventPage {
  /** Each with its payload's size (payload_bytes, the jsonb text's length). */
  readonly rows: readonly (AuditEventRow & { readonly payload_bytes: number })[];
  readonly more: boolean;
}

/**
 * One page of events visible to `principal`, newest first (time, then
 * event_id, descending), after `cursor`: at most `pageSize` events, and only
 * while the payload bytes up to and including an event stay within
 * `budgetBytes` (the first event always: a page is never empty while events
 * follow). The page is chosen in SQL from the events' keys and
 * stored sizes: payloads are fetched for the page's events only, never for
 * those it leaves out.
 */
export async function selectAuditEvents(
  db: CommonQueryMethods,
  principal: Principal,
  filters: AuditEventFilters,
  cursor: AuditEventCursor | undefined,
  pageSize: number,
  budgetBytes: number = PAGE_PAYLOAD_BUDGET_BYTES,
): Promise<AuditEventPage> {
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
  // One pass over the index: the next pageSize + 1 events (one more tells
  // whether another page follows), each with its position and the running sum
  // of payload bytes through it; the page is the prefix that fits (the sum
  // only grows). A payload stays a pointer until it is output, so the events
  // left out cost no detoasting, and only the page's events meet the chain.
  const rows = await db.any(sql.type(auditEventPageRow)`
    SELECT ${EVENT_COLUMNS}, e.payload_bytes, e.candidates > count(*) OVER () AS more
      FROM (SELECT w.*, count(*) OVER () AS candidates,
                   row_number() OVER win <= ${pageSize}
                     AND (row_number() OVER win = 1 OR sum(w.payload_bytes) OVER win <= ${budgetBytes}) AS in_page
              FROM (SELECT e.*
                      FROM audit_events AS e
                     WHERE ${sql.join(conditions, sql.fragment` AND `)}
                     ORDER BY e."timestamp" DESC, e.event_id DESC
                     LIMIT ${pageSize + 1}) AS w
            WINDOW win AS (ORDER BY w."timestamp" DESC, w.event_id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS e
      LEFT JOIN audit_chain AS c ON c.event_seq = e.event_seq
     WHERE e.in_page
     ORDER BY e."timestamp" DESC, e.event_id DESC
  `);
  return { rows, more: rows[0]?.more ?? false };
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
