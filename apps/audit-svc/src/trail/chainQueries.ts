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
 * The event_seq values a check of positions first..last must read: those
 * its entries name, or for the whole chain (`everywhere`) every event_seq
 * in either table, so that no event without an entry escapes. Nulls when
 * there is nothing to read.
 */
export async function selectEventSeqBounds(db: CommonQueryMethods, first: string, last: string, everywhere: boolean) {
  const bounds = z.object({ low: z.string().nullable(), high: z.string().nullable() });
  return everywhere
    ? db.one(sql.type(bounds)`
        SELECT least((SELECT min(event_seq) FROM audit_events), (SELECT min(event_seq) FROM audit_chain)) AS low,
               greatest((SELECT max(event_seq) FROM audit_events), (SELECT max(event_seq) FROM audit_chain)) AS high
      `)
    : db.one(sql.type(bounds)`
        SELECT min(event_seq) AS low, max(event_seq) AS high
          FROM audit_chain WHERE sequence_number BETWEEN ${first}::int8 AND ${last}::int8
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

/** The position of the first chained event written after `eventSeq` (where an unchained event would have been chained). */
export async function selectPositionAfterEvent(db: CommonQueryMethods, eventSeq: string) {
  return db.maybeOneFirst(sql.type(z.object({ sequence_number: z.string() }))`
    SELECT sequence_number FROM audit_chain WHERE event_seq > ${eventSeq}::int8 ORDER BY event_seq LIMIT 1
  `);
}
