import { hash } from 'node:crypto';
import { copyOutRows, uuidText } from '@clinical/db/raw-pg';
import type pg from 'pg';
import type { ChainLinks, LinkOutcome } from './chainLinks.js';
import { eventContentDigest } from './eventContentDigest.js';

/** Chain positions first..last (inclusive), and the events with event_seq low..high. */
export interface ChainSlice {
  readonly first: number;
  readonly last: number;
  readonly low: number;
  readonly high: number;
}

/** What the slices checked so far found, shared by every reader. Positions are Infinity while none was found. */
export class ChainFindings {
  /** Chain entries seen. */
  chained = 0;
  /** The first entry whose row_hash is not sha256(previous_hash || content_hash) (INSERTED). */
  firstBroken = Number.POSITIVE_INFINITY;
  /** The first entry whose event is gone (DELETED). */
  firstMissing = Number.POSITIVE_INFINITY;
  /** The first entry whose event no longer hashes to its content_hash (EDITED). */
  firstEdited = Number.POSITIVE_INFINITY;
  /** Events with neither a chain entry nor a place in the queue: written behind the services' back. */
  writtenOutside = 0;
  /** Events queued for the sealer, not chained yet. */
  awaitingSeal = 0;
  /** The first of the events written outside, by event_seq. */
  firstOutside?: { readonly eventSeq: number; readonly eventId: string };
}

/** Columns of the slice's rows: the chain entry's four, the event's 16 (as eventContentDigest takes them), then `unchained`. */
const SLICE_FIELDS = 21;
const EVENT = 4;
const UNCHAINED = 20;
/** `unchained` of an event without an entry in the slice: chained at a position outside the range, or queued. */
const CHAINED_ELSEWHERE = 2;
const AWAITING_SEAL = 1;
const HASH_BYTES = 32;

/**
 * One statement per slice: chain entries and events meet on event_seq in a
 * full merge join (both sides read in event_seq order from their unique
 * indexes, close to the order they were written in), so that entries without
 * an event and events without an entry come out of the same single pass. The
 * values are integers this service computed: COPY takes no parameters.
 */
function sliceStatement(slice: ChainSlice): string {
  return `COPY (
    SELECT c.sequence_number, c.previous_hash, c.content_hash, c.row_hash,
           e.event_id, e.event_seq, e.event_type, e.entity_type, e.entity_id, e.entity_key, e.patient_id, e.user_id,
           e.action, e.payload, e.ip_address::text, e."timestamp", e.request_id, e.trace_id, e.reason, e.db_role,
           CASE WHEN c.sequence_number IS NOT NULL THEN NULL
                WHEN EXISTS (SELECT 1 FROM audit_chain AS o WHERE o.event_seq = e.event_seq) THEN ${CHAINED_ELSEWHERE}
                WHEN EXISTS (SELECT 1 FROM audit_chain_pending AS p WHERE p.event_seq = e.event_seq) THEN ${AWAITING_SEAL}
                ELSE 0 END AS unchained
      FROM (SELECT sequence_number, event_seq, previous_hash, content_hash, row_hash FROM audit_chain
             WHERE event_seq BETWEEN ${slice.low} AND ${slice.high}
               AND sequence_number BETWEEN ${slice.first} AND ${slice.last}) AS c
      FULL JOIN (SELECT * FROM audit_events WHERE event_seq BETWEEN ${slice.low} AND ${slice.high}) AS e
        ON e.event_seq = c.event_seq
  ) TO STDOUT (FORMAT binary)`;
}

/** An int8 field as a number. @throws Error past 2^53, which no chain reaches (a billion events a day for 25,000 years). */
function int8At(buffer: Buffer, start: number): number {
  const high = buffer.readInt32BE(start);
  if (high < -0x20_0000 || high >= 0x20_0000) {
    throw new Error('a chain position or event_seq beyond 2^53');
  }
  return high * 4_294_967_296 + buffer.readUInt32BE(start + 4);
}

/** Whether `digest` (latin1, as node:crypto returns it) is the 32 bytes at `start`. */
function digestIs(digest: string, buffer: Buffer, start: number): boolean {
  for (let index = 0; index < HASH_BYTES; index += 1) {
    if (digest.charCodeAt(index) !== buffer[start + index]) {
      return false;
    }
  }
  return true;
}

function sameBytes(a: Buffer, aStart: number, aLength: number, b: Buffer, bStart: number, bLength: number): boolean {
  if (aLength !== bLength) {
    return false;
  }
  for (let index = 0; index < aLength; index += 1) {
    if (a[aStart + index] !== b[bStart + index]) {
      return false;
    }
  }
  return true;
}

/**
 * Checks the rows of one slice as they arrive: each entry's row_hash against
 * sha256(previous_hash || content_hash), each event against its entry's
 * content_hash (EDITED when it differs, DELETED when the event is gone), the
 * links within each run of consecutive positions (the runs go to `links`,
 * which checks where they meet), and events without an entry. Findings go
 * to `findings`.
 */
class SliceRows {
  /** previous_hash || content_hash of the entry at hand, copied a word at a time: sha256's input for its row_hash. */
  private readonly linkInput = Buffer.allocUnsafe(HASH_BYTES * 2);
  private readonly linkInputView = new DataView(this.linkInput.buffer, this.linkInput.byteOffset, this.linkInput.length);
  private chunk?: Buffer;
  private chunkView?: DataView;
  private runStart = -1;
  private runEnd = -1;
  private runStartPrevious: Buffer = this.linkInput;
  /** Where the row_hash of the run's last entry is: in the chunk that held it, never written to again. */
  private endRow: Buffer = this.linkInput;
  private endRowStart = 0;
  private endRowLength = 0;

  constructor(
    private readonly findings: ChainFindings,
    private readonly links: ChainLinks,
  ) {}

  readonly row = (buffer: Buffer, starts: Int32Array, lengths: Int32Array): void => {
    const { findings } = this;
    if (lengths[0]! < 0) {
      this.unchained(buffer, starts);
      return;
    }
    const position = int8At(buffer, starts[0]!);
    findings.chained += 1;
    const previousStart = starts[1]!;
    const previousLength = lengths[1]!;
    const contentStart = starts[2]!;
    const contentLength = lengths[2]!;
    const rowStart = starts[3]!;
    const rowLength = lengths[3]!;

    // A hash of another length than sha256's breaks the entry whatever it hashes to: the table's
    // CHECK forbids it, so someone dropped the check to write it.
    if (previousLength !== HASH_BYTES || contentLength !== HASH_BYTES || rowLength !== HASH_BYTES) {
      findings.firstBroken = Math.min(findings.firstBroken, position);
    } else {
      if (buffer !== this.chunk) {
        this.chunk = buffer;
        this.chunkView = new DataView(buffer.buffer, buffer.byteOffset, buffer.length);
      }
      const chunkView = this.chunkView!;
      const { linkInputView } = this;
      for (let offset = 0; offset < HASH_BYTES; offset += 4) {
        linkInputView.setUint32(offset, chunkView.getUint32(previousStart + offset));
        linkInputView.setUint32(HASH_BYTES + offset, chunkView.getUint32(contentStart + offset));
      }
      if (!digestIs(hash('sha256', this.linkInput, 'binary'), buffer, rowStart)) {
        findings.firstBroken = Math.min(findings.firstBroken, position);
      }
    }

    if (position === this.runEnd + 1 && this.runStart >= 0) {
      if (!sameBytes(buffer, previousStart, previousLength, this.endRow, this.endRowStart, this.endRowLength)) {
        this.links.broken(position);
      }
      this.runEnd = position;
    } else {
      this.finish();
      this.runStart = position;
      this.runEnd = position;
      this.runStartPrevious = buffer.subarray(previousStart, previousStart + Math.max(previousLength, 0));
    }
    this.endRow = buffer;
    this.endRowStart = rowStart;
    this.endRowLength = Math.max(rowLength, 0);

    if (lengths[EVENT]! < 0) {
      findings.firstMissing = Math.min(findings.firstMissing, position);
    } else if (contentLength !== HASH_BYTES || !digestIs(eventContentDigest(buffer, starts, lengths, EVENT), buffer, contentStart)) {
      findings.firstEdited = Math.min(findings.firstEdited, position);
    }
  };

  /** Hands the run in progress to `links`: at the end of the slice, or when the next entry does not follow it. */
  finish(): void {
    if (this.runStart >= 0) {
      this.links.add(this.runStart, this.runEnd, this.runStartPrevious, this.endRow.subarray(this.endRowStart, this.endRowStart + this.endRowLength));
      this.runStart = -1;
      this.runEnd = -1;
    }
  }

  private unchained(buffer: Buffer, starts: Int32Array): void {
    const { findings } = this;
    const unchained = buffer.readInt32BE(starts[UNCHAINED]!);
    if (unchained === AWAITING_SEAL) {
      findings.awaitingSeal += 1;
    } else if (unchained !== CHAINED_ELSEWHERE) {
      findings.writtenOutside += 1;
      const eventSeq = int8At(buffer, starts[EVENT + 1]!);
      if (!findings.firstOutside || eventSeq < findings.firstOutside.eventSeq) {
        findings.firstOutside = { eventSeq, eventId: uuidText(buffer, starts[EVENT]!) };
      }
    }
  }
}

/** Checks one slice (see SliceRows), reading it by binary COPY on `client`. */
export async function scanChainSlice(
  client: pg.ClientBase,
  slice: ChainSlice,
  findings: ChainFindings,
  links: ChainLinks,
): Promise<void> {
  const rows = new SliceRows(findings, links);
  await copyOutRows(client, sliceStatement(slice), SLICE_FIELDS, rows.row);
  rows.finish();
}

/**
 * Checks the links of positions first..last in position order, in constant
 * memory (no run is held): for when `ChainLinks` overflowed.
 */
export async function checkLinksInOrder(
  client: pg.ClientBase,
  first: number,
  last: number,
  priorHash: Buffer,
): Promise<LinkOutcome> {
  let expected = first;
  let previousRow: Buffer = priorHash;
  let previousRowStart = 0;
  let previousRowLength = priorHash.length;
  let firstGap: number | undefined;
  let firstBroken: number | undefined;
  const statement = `COPY (SELECT sequence_number, previous_hash, row_hash FROM audit_chain
                            WHERE sequence_number BETWEEN ${first} AND ${last} ORDER BY sequence_number) TO STDOUT (FORMAT binary)`;
  await copyOutRows(client, statement, 3, (buffer, starts, lengths) => {
    const position = int8At(buffer, starts[0]!);
    if (position !== expected) {
      // The entry before is missing: the gap is the finding, and this entry's link is taken as given.
      firstGap ??= expected;
    } else if (!sameBytes(buffer, starts[1]!, lengths[1]!, previousRow, previousRowStart, previousRowLength)) {
      firstBroken ??= position;
    }
    expected = position + 1;
    previousRow = buffer;
    previousRowStart = starts[2]!;
    previousRowLength = Math.max(lengths[2]!, 0);
  });
  return {
    ...(firstGap !== undefined ? { firstGap } : {}),
    ...(firstBroken !== undefined ? { firstBroken } : {}),
    ...(expected <= last ? { missingTailFrom: expected } : {}),
  };
}
