import { sql, type CommonQueryMethods } from '@clinical/db';
import { z } from 'zod';

export const ZERO_HASH = '0'.repeat(64);

const CONTENT_HASH_OF_E = sql.fragment`audit_event_content_hash(e.event_id, e.event_seq, e.event_type, e.entity_type,
  e.entity_id, e.entity_key, e.patient_id, e.user_id, e.action, e.payload, e.ip_address, e."timestamp",
  e.request_id, e.trace_id, e.reason, e.db_role)`;

/** Where the chain starts (the anchor) and where its head says it ends. */
export async function selectChainBounds(db: CommonQueryMethods) {
  return db.one(sql.type(
    z.object({ anchor_sequence: z.string(), anchor_hash: z.string(), head_sequence: z.string(), head_hash: z.string() }),
  )`
    SELECT coalesce(a.anchor_sequence_number, 0)::int8 AS anchor_sequence,
           coalesce(encode(a.anchor_hash, 'hex'), ${ZERO_HASH}) AS anchor_hash,
           h.sequence_number AS head_sequence, encode(h.row_hash, 'hex') AS head_hash
      FROM audit_chain_head AS h
      LEFT JOIN LATERAL (SELECT anchor_sequence_number, anchor_hash FROM audit_chain_anchors
                          ORDER BY anchor_sequence_number DESC LIMIT 1) AS a ON true
     WHERE h.singleton
  `);
}

/** One chain entry, or null. */
export async function selectChainEntry(db: CommonQueryMethods, sequenceNumber: string) {
  return db.maybeOne(sql.type(
    z.object({ event_seq: z.string(), previous_hash: z.string(), content_hash: z.string(), row_hash: z.string() }),
  )`
    SELECT event_seq, encode(previous_hash, 'hex') AS previous_hash, encode(content_hash, 'hex') AS content_hash,
           encode(row_hash, 'hex') AS row_hash
      FROM audit_chain WHERE sequence_number = ${sequenceNumber}::int8
  `);
}

/**
 * Checks the links of positions low..high (inclusive) in one pass: numbers
 * follow each other from `low`, each previous_hash is the row_hash before it
 * (`priorHash` for the first), each row_hash is sha256(previous_hash ||
 * content_hash). Returns the count seen, the first missing position of the
 * first gap, and the first broken link.
 */
export async function checkChainLinks(db: CommonQueryMethods, low: string, high: string, priorHash: string) {
  return db.one(sql.type(
    z.object({
      checked: z.string(),
      last_sequence: z.string().nullable(),
      first_gap: z.string().nullable(),
      first_broken: z.string().nullable(),
      min_event_seq: z.string().nullable(),
      max_event_seq: z.string().nullable(),
    }),
  )`
    SELECT count(*)::int8 AS checked, max(sequence_number) AS last_sequence,
           min(expected) FILTER (WHERE gap) AS first_gap,
           min(sequence_number) FILTER (WHERE broken) AS first_broken,
           min(event_seq) AS min_event_seq, max(event_seq) AS max_event_seq
      FROM (SELECT c.sequence_number, c.event_seq,
                   coalesce(lag(c.sequence_number) OVER w, ${low}::int8 - 1) + 1 AS expected,
                   c.sequence_number <> coalesce(lag(c.sequence_number) OVER w, ${low}::int8 - 1) + 1 AS gap,
                   c.previous_hash <> coalesce(lag(c.row_hash) OVER w, decode(${priorHash}, 'hex'))
                     OR c.row_hash <> sha256(c.previous_hash || c.content_hash) AS broken
              FROM audit_chain AS c
             WHERE c.sequence_number BETWEEN ${low}::int8 AND ${high}::int8
            WINDOW w AS (ORDER BY c.sequence_number)) AS links
  `);
}

/**
 * Recomputes the content hash of the events chained at low..high and
 * returns the first position whose event is missing and the first whose
 * content no longer hashes to the chained content_hash.
 */
export async function checkChainedContent(
  db: CommonQueryMethods,
  low: string,
  high: string,
  eventSeqRange: { min: string; max: string },
) {
  return db.one(sql.type(z.object({ first_missing: z.string().nullable(), first_edited: z.string().nullable() }))`
    SELECT min(c.sequence_number) FILTER (WHERE e.event_seq IS NULL) AS first_missing,
           min(c.sequence_number) FILTER (WHERE e.event_seq IS NOT NULL AND c.content_hash <> ${CONTENT_HASH_OF_E}) AS first_edited
      FROM audit_chain AS c
      LEFT JOIN audit_events AS e
        ON e.event_seq = c.event_seq AND e.event_seq BETWEEN ${eventSeqRange.min}::int8 AND ${eventSeqRange.max}::int8
     WHERE c.sequence_number BETWEEN ${low}::int8 AND ${high}::int8
  `);
}

/** Details of the event chained at a position: its id and recomputed hashes (null when it is missing). */
export async function selectChainedEvent(db: CommonQueryMethods, sequenceNumber: string) {
  return db.maybeOne(sql.type(
    z.object({ event_id: z.string().nullable(), recomputed_row_hash: z.string().nullable(), row_hash: z.string() }),
  )`
    SELECT e.event_id, encode(sha256(c.previous_hash || ${CONTENT_HASH_OF_E}), 'hex') AS recomputed_row_hash,
           encode(c.row_hash, 'hex') AS row_hash
      FROM audit_chain AS c LEFT JOIN audit_events AS e ON e.event_seq = c.event_seq
     WHERE c.sequence_number = ${sequenceNumber}::int8
  `);
}

/** The first event still present after a position (for a gap: the event after it). */
export async function selectFirstEventAfter(db: CommonQueryMethods, sequenceNumber: string) {
  return db.maybeOneFirst(sql.type(z.object({ event_id: z.string() }))`
    SELECT e.event_id FROM audit_chain AS c JOIN audit_events AS e ON e.event_seq = c.event_seq
     WHERE c.sequence_number > ${sequenceNumber}::int8
     ORDER BY c.sequence_number LIMIT 1
  `);
}

/**
 * Events without a chain entry (written behind the services' back), within
 * an event_seq range or everywhere: how many, and the first of them with
 * the position of the first chained event written after it.
 */
export async function selectUnchainedEvents(db: CommonQueryMethods, eventSeqRange?: { min: string; max: string }) {
  const within = eventSeqRange
    ? sql.fragment`e.event_seq BETWEEN ${eventSeqRange.min}::int8 AND ${eventSeqRange.max}::int8`
    : sql.fragment`true`;
  // Events without a chain entry: those still waiting for the sealer (pending)
  // are not yet chained; the others were written outside the services.
  return db.one(sql.type(
    z.object({
      unchained: z.string(),
      awaiting_seal: z.string(),
      first_event_id: z.string().nullable(),
      next_position: z.string().nullable(),
    }),
  )`
    WITH unchained AS (
      SELECT e.event_seq, e.event_id,
             EXISTS (SELECT 1 FROM audit_chain_pending AS p WHERE p.event_seq = e.event_seq) AS awaiting_seal
        FROM audit_events AS e
       WHERE ${within} AND NOT EXISTS (SELECT 1 FROM audit_chain AS c WHERE c.event_seq = e.event_seq)
    ), first AS (
      SELECT event_seq, event_id FROM unchained WHERE NOT awaiting_seal ORDER BY event_seq LIMIT 1
    )
    SELECT (SELECT count(*) FROM unchained WHERE NOT awaiting_seal)::int8 AS unchained,
           (SELECT count(*) FROM unchained WHERE awaiting_seal)::int8 AS awaiting_seal,
           first.event_id AS first_event_id,
           (SELECT c.sequence_number FROM audit_chain AS c WHERE c.event_seq > first.event_seq
             ORDER BY c.event_seq LIMIT 1) AS next_position
      FROM (SELECT 1) AS one LEFT JOIN first ON true
  `);
}
