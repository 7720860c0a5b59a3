import { createHash } from 'node:crypto';
import { auditV1 } from '@clinical/contracts';
import type { CommonQueryMethods } from '@clinical/db';
import type { LinkOutcome } from './chainLinks.js';
import {
  selectChainBounds,
  selectChainedEvent,
  selectChainEntry,
  selectEventSeqBounds,
  selectFirstEventAfter,
  selectPositionAfterEvent,
} from './chainQueries.js';
import { exportSnapshot } from './exportSnapshot.js';
import { runChainScan } from './runChainScan.js';
import { ChainFindings } from './scanChainSlice.js';

const { ChainBreakKind } = auditV1;

/** Stretches of positions not yet joined to their neighbours that a check holds before it checks links in position order instead (~300 bytes each). */
const MAX_OPEN_RUNS = 50_000;

export interface VerifyChainOptions {
  /** First position to check; default (or anything before it) the first after the anchor. */
  readonly start?: bigint;
  /** Position to stop before; default the end of the chain. */
  readonly end?: bigint;
  /** event_seq values read per COPY statement: the unit the readers share out. */
  readonly batchSize: number;
  /** A cancelled call stops the scan (its worker is terminated). */
  readonly signal?: AbortSignal;
  /** Where to open the readers (the service's own role). */
  readonly databaseUrl: string;
  /** Readers on `db`'s snapshot, reading slices side by side. */
  readonly connections: number;
  /** Overrides MAX_OPEN_RUNS (tests reach the position-order check with it). */
  readonly maxOpenRuns?: number;
}

interface Candidate {
  readonly kind: auditV1.ChainBreakKind;
  readonly position: number;
}

const sha256Hex = (...hexParts: string[]) =>
  createHash('sha256').update(Buffer.concat(hexParts.map((part) => Buffer.from(part, 'hex')))).digest('hex');

/** The first of `candidates` by position; on a tie, the one listed first. */
const earliest = (candidates: readonly (Candidate | undefined)[]): Candidate | undefined =>
  candidates
    .filter((candidate): candidate is Candidate => candidate !== undefined && Number.isFinite(candidate.position))
    .reduce<Candidate | undefined>((first, candidate) => (!first || candidate.position < first.position ? candidate : first), undefined);

/** Positions are bigint strings in SQL and numbers here: a chain would need 2^53 events to tell them apart. */
function positionOf(value: string | bigint): number {
  const position = Number(value);
  if (!Number.isSafeInteger(position)) {
    throw new Error('a chain position beyond 2^53');
  }
  return position;
}

/**
 * Verifies a range of chain positions: reads entries and events by binary
 * COPY on `options.connections` connections that import `db`'s snapshot
 * (slices of event_seq side by side) and recomputes every hash in a worker
 * thread (runChainScan, scanChain), then reports the first break:
 * a gap or a missing event (DELETED), a missing tail (TRUNCATED), content
 * that no longer hashes as chained (EDITED), an entry that does not hash
 * right or does not link (INSERTED), or an event with neither an entry nor
 * a place in the sealer's queue (INSERTED: written behind the services'
 * back). Every slice is read to the end, so the earliest break wins
 * whatever slice found it. `db` answers the small queries (bounds, the
 * break's details) on the same snapshot.
 */
export async function verifyChain(db: CommonQueryMethods, options: VerifyChainOptions): Promise<auditV1.VerifyAuditTrailResponse> {
  const verifyTime = new Date();
  const bounds = await selectChainBounds(db);
  const anchorSequence = BigInt(bounds.anchor_sequence);
  const headSequence = positionOf(bounds.head_sequence);
  // A range past the head is empty, whatever its numbers: compare them as they came before narrowing them.
  const from = options.start !== undefined && options.start > anchorSequence + 1n ? options.start : anchorSequence + 1n;
  const toEnd = options.end === undefined || options.end - 1n >= BigInt(headSequence);
  const through = toEnd ? BigInt(headSequence) : (options.end as bigint) - 1n;
  const empty = from > through;
  const first = empty ? 0 : positionOf(from);
  const last = empty ? -1 : positionOf(through);

  let priorHash = bounds.anchor_hash;
  let priorMissing: Candidate | undefined;
  if (!empty && from > anchorSequence + 1n) {
    const prior = await selectChainEntry(db, String(first - 1));
    if (prior) {
      priorHash = prior.row_hash;
    } else {
      priorMissing = { kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED, position: first - 1 };
    }
  }

  let findings = new ChainFindings();
  let links: LinkOutcome = {};
  if (!empty) {
    // A whole-chain check looks for events without an entry everywhere; a range among the event_seq values its entries name.
    const wholeChain = toEnd && from === anchorSequence + 1n;
    const seqBounds = await selectEventSeqBounds(db, String(first), String(last), wholeChain);
    ({ findings, links } = await runChainScan(
      {
        databaseUrl: options.databaseUrl,
        snapshot: await exportSnapshot(db),
        connections: options.connections,
        first,
        last,
        low: seqBounds.low === null ? null : positionOf(seqBounds.low),
        high: seqBounds.high === null ? null : positionOf(seqBounds.high),
        batchSize: options.batchSize,
        priorHash,
        maxOpenRuns: options.maxOpenRuns ?? MAX_OPEN_RUNS,
      },
      options.signal,
    ));
  }

  let found = earliest([
    priorMissing,
    links.firstGap === undefined ? undefined : { kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED, position: links.firstGap },
    { kind: ChainBreakKind.CHAIN_BREAK_KIND_INSERTED, position: Math.min(findings.firstBroken, links.firstBroken ?? Number.POSITIVE_INFINITY) },
    { kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED, position: findings.firstMissing },
    { kind: ChainBreakKind.CHAIN_BREAK_KIND_EDITED, position: findings.firstEdited },
    links.missingTailFrom === undefined
      ? undefined
      : { kind: toEnd ? ChainBreakKind.CHAIN_BREAK_KIND_TRUNCATED : ChainBreakKind.CHAIN_BREAK_KIND_DELETED, position: links.missingTailFrom },
  ]);
  let checked = found ? Math.max(found.position - first, 0) : findings.chained;

  let unchainedBreak: auditV1.ChainBreak | undefined;
  if (findings.firstOutside) {
    const after = await selectPositionAfterEvent(db, String(findings.firstOutside.eventSeq));
    const position = after === null ? headSequence + 1 : positionOf(after);
    if (!found || position < found.position) {
      found = undefined;
      checked = Math.max(position - first, 0);
      const { eventId } = findings.firstOutside;
      unchainedBreak = {
        kind: ChainBreakKind.CHAIN_BREAK_KIND_INSERTED,
        sequenceNumber: String(position),
        eventId,
        expectedHash: '',
        actualHash: '',
        description: `event ${eventId} has no chain entry and was never queued for one: written outside the services; ${findings.writtenOutside} such event(s)`,
      };
    }
  }

  const firstBreak = unchainedBreak ?? (found ? await describeBreak(db, found, headSequence, bounds.head_hash) : undefined);
  return {
    intact: firstBreak === undefined,
    checkedCount: String(checked),
    firstSequenceNumber: checked > 0 ? String(first) : '0',
    lastSequenceNumber: String(checked > 0 ? first + checked - 1 : 0),
    firstBreak,
    unchainedCount: String(findings.writtenOutside + findings.awaitingSeal),
    anchorHash: bounds.anchor_hash,
    anchorSequenceNumber: bounds.anchor_sequence,
    verifyTime,
  };
}

async function describeBreak(
  db: CommonQueryMethods,
  found: Candidate,
  headSequence: number,
  headHash: string,
): Promise<auditV1.ChainBreak> {
  const position = String(found.position);
  switch (found.kind) {
    case ChainBreakKind.CHAIN_BREAK_KIND_EDITED: {
      const event = await selectChainedEvent(db, position);
      return {
        kind: found.kind,
        sequenceNumber: position,
        eventId: event?.event_id ?? '',
        expectedHash: event?.row_hash ?? '',
        actualHash: event?.recomputed_row_hash ?? '',
        description: `event ${event?.event_id ?? '?'} at ${position} was edited: its content no longer hashes to its row_hash`,
      };
    }
    case ChainBreakKind.CHAIN_BREAK_KIND_INSERTED: {
      const entry = await selectChainEntry(db, position);
      const before = await selectChainEntry(db, String(found.position - 1));
      const event = await selectChainedEvent(db, position);
      const linked = before && entry && before.row_hash === entry.previous_hash;
      return {
        kind: found.kind,
        sequenceNumber: position,
        eventId: event?.event_id ?? '',
        expectedHash: linked ? sha256Hex(entry.previous_hash, entry.content_hash) : (before?.row_hash ?? ''),
        actualHash: linked ? entry.row_hash : (entry?.previous_hash ?? ''),
        description: `the chain entry at ${position} does not link to the entry before it: inserted or rewritten outside the chain`,
      };
    }
    case ChainBreakKind.CHAIN_BREAK_KIND_TRUNCATED:
      return {
        kind: found.kind,
        sequenceNumber: position,
        eventId: '',
        expectedHash: headHash,
        actualHash: '',
        description: `the chain stops before ${position}, but its head records ${headSequence}: events ${position} to ${headSequence} were deleted`,
      };
    default: {
      const entry = await selectChainEntry(db, position);
      const after = await selectFirstEventAfter(db, position);
      return {
        kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED,
        sequenceNumber: position,
        eventId: after ?? '',
        expectedHash: entry?.row_hash ?? '',
        actualHash: '',
        description: entry
          ? `the event chained at ${position} was deleted`
          : `chain position ${position} is missing: events were deleted`,
      };
    }
  }
}
