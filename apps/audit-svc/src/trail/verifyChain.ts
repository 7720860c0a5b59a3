import { createHash } from 'node:crypto';
import { auditV1 } from '@clinical/contracts';
import type { CommonQueryMethods } from '@clinical/db';
import {
  checkChainedContent,
  checkChainLinks,
  selectChainBounds,
  selectChainedEvent,
  selectChainEntry,
  selectFirstEventAfter,
  selectUnchainedEvents,
  ZERO_HASH,
} from './chainQueries.js';

const { ChainBreakKind } = auditV1;

export interface VerifyChainOptions {
  /** First position to check; default (or anything before it) the first after the anchor. */
  readonly start?: bigint;
  /** Position to stop before; default the end of the chain. */
  readonly end?: bigint;
  /** Positions checked per query. */
  readonly batchSize: number;
  /** Checked between batches: a cancelled call stops reading. */
  readonly signal?: AbortSignal;
  /** More connections on the same snapshot, to check batches side by side. */
  readonly helpers?: readonly SnapshotReader[];
}

/**
 * Runs `work` on a connection that sees the same snapshot as the one
 * verifyChain was given, inside that connection's own transaction (slonik
 * refuses a query on a transaction from within another's callback).
 */
export type SnapshotReader = (work: (db: CommonQueryMethods) => Promise<void>) => Promise<void>;

interface Candidate {
  readonly kind: auditV1.ChainBreakKind;
  readonly position: bigint;
}

const sha256Hex = (...hexParts: string[]) =>
  createHash('sha256').update(Buffer.concat(hexParts.map((part) => Buffer.from(part, 'hex')))).digest('hex');

const earliest = (candidates: readonly (Candidate | undefined)[]): Candidate | undefined =>
  candidates
    .filter((candidate): candidate is Candidate => candidate !== undefined)
    .reduce<Candidate | undefined>((first, candidate) => (!first || candidate.position < first.position ? candidate : first), undefined);

/** What checking one batch of positions found. */
interface BatchOutcome {
  /** Positions seen in the batch. */
  readonly checked: bigint;
  /** Its earliest break, if any. */
  readonly found?: Candidate;
  /** The event_seq values its entries name. */
  readonly eventSeqRange?: { readonly min: string; readonly max: string };
}

/**
 * Checks positions low..high (inclusive): links (each entry to the one
 * before, the first to `priorHash`), content (each chained event present
 * and hashing as chained), and that the batch is whole. `atHead`: high is
 * the head's position, so a missing tail is a truncation.
 */
async function checkBatch(db: CommonQueryMethods, low: bigint, high: bigint, priorHash: string, atHead: boolean): Promise<BatchOutcome> {
  const links = await checkChainLinks(db, String(low), String(high), priorHash);
  const lastSeen = links.last_sequence === null ? low - 1n : BigInt(links.last_sequence);
  const eventSeqRange =
    links.min_event_seq !== null && links.max_event_seq !== null ? { min: links.min_event_seq, max: links.max_event_seq } : undefined;
  const content = eventSeqRange ? await checkChainedContent(db, String(low), String(high), eventSeqRange) : undefined;
  const found = earliest([
    links.first_gap === null ? undefined : { kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED, position: BigInt(links.first_gap) },
    links.first_broken === null ? undefined : { kind: ChainBreakKind.CHAIN_BREAK_KIND_INSERTED, position: BigInt(links.first_broken) },
    content?.first_missing ? { kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED, position: BigInt(content.first_missing) } : undefined,
    content?.first_edited ? { kind: ChainBreakKind.CHAIN_BREAK_KIND_EDITED, position: BigInt(content.first_edited) } : undefined,
    lastSeen < high
      ? { kind: atHead ? ChainBreakKind.CHAIN_BREAK_KIND_TRUNCATED : ChainBreakKind.CHAIN_BREAK_KIND_DELETED, position: lastSeen + 1n }
      : undefined,
  ]);
  return { checked: BigInt(links.checked), found, eventSeqRange };
}

/**
 * The row hash a batch starting at `low` (after the chain's first batch)
 * must link to: the entry before it. When that entry is missing, the batch
 * before reports the gap, which comes first; this batch then takes its own
 * first link as given rather than report a later, derived break.
 */
async function priorHashOf(db: CommonQueryMethods, low: bigint): Promise<string> {
  const prior = await selectChainEntry(db, String(low - 1n));
  return prior?.row_hash ?? (await selectChainEntry(db, String(low)))?.previous_hash ?? ZERO_HASH;
}

/**
 * Recomputes the hash chain over a range of positions (set-based, a batch of
 * positions per query) and looks for events left out of it. Reports the
 * first break: a gap or a missing event (DELETED), a missing tail
 * (TRUNCATED), content that no longer hashes as chained (EDITED), a chain
 * entry that does not link or an event without entry (INSERTED).
 *
 * `db` and `options.helpers` see one and the same snapshot (`db` exported
 * it, the helpers imported it): each checks a batch at a time, so that the
 * batches run side by side on as many cores. Batches after one with a break
 * are not started; the earliest break wins.
 */
export async function verifyChain(db: CommonQueryMethods, options: VerifyChainOptions): Promise<auditV1.VerifyAuditTrailResponse> {
  const verifyTime = new Date();
  const bounds = await selectChainBounds(db);
  const anchorSequence = BigInt(bounds.anchor_sequence);
  const headSequence = BigInt(bounds.head_sequence);
  const first = options.start !== undefined && options.start > anchorSequence + 1n ? options.start : anchorSequence + 1n;
  const toEnd = options.end === undefined || options.end - 1n >= headSequence;
  const last = toEnd ? headSequence : (options.end as bigint) - 1n;
  const batch = BigInt(options.batchSize);

  let found: Candidate | undefined;
  let checked = 0n;
  let firstPriorHash = bounds.anchor_hash;
  let eventSeqRange: { min: string; max: string } | undefined;
  if (first > anchorSequence + 1n && first <= last) {
    const prior = await selectChainEntry(db, String(first - 1n));
    if (prior) {
      firstPriorHash = prior.row_hash;
    } else {
      found = { kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED, position: first - 1n };
    }
  }

  const batchCount = found || last < first ? 0 : Number((last - first) / batch) + 1;
  const outcomes: BatchOutcome[] = [];
  let nextBatch = 0;
  let earliestBroken = batchCount;
  // A whole-chain check looks for unchained events everywhere, whatever the
  // batches find: the first reader out of batches does it meanwhile.
  const wholeChain = toEnd && first === anchorSequence + 1n;
  let unchainedEverywhere: ReturnType<typeof selectUnchainedEvents> | undefined;
  const checkBatches = async (reader: CommonQueryMethods) => {
    for (;;) {
      if (nextBatch >= batchCount || nextBatch > earliestBroken) {
        if (wholeChain && !unchainedEverywhere) {
          unchainedEverywhere = selectUnchainedEvents(reader);
          await unchainedEverywhere;
        }
        return;
      }
      options.signal?.throwIfAborted();
      const index = nextBatch;
      nextBatch += 1;
      const low = first + BigInt(index) * batch;
      const high = low + batch - 1n < last ? low + batch - 1n : last;
      const priorHash = index === 0 ? firstPriorHash : await priorHashOf(reader, low);
      const outcome = await checkBatch(reader, low, high, priorHash, toEnd && high === headSequence);
      outcomes[index] = outcome;
      if (outcome.found && index < earliestBroken) {
        earliestBroken = index;
      }
    }
  };
  // Every reader's work settles before the snapshot's transactions may end.
  const settled = await Promise.allSettled([checkBatches(db), ...(options.helpers ?? []).map((helper) => helper(checkBatches))]);
  const failed = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed) {
    throw failed.reason;
  }
  for (const outcome of outcomes.slice(0, Math.min(earliestBroken + 1, batchCount))) {
    if (outcome.eventSeqRange) {
      eventSeqRange = {
        min: eventSeqRange && BigInt(eventSeqRange.min) < BigInt(outcome.eventSeqRange.min) ? eventSeqRange.min : outcome.eventSeqRange.min,
        max: eventSeqRange && BigInt(eventSeqRange.max) > BigInt(outcome.eventSeqRange.max) ? eventSeqRange.max : outcome.eventSeqRange.max,
      };
    }
    if (outcome.found) {
      found = outcome.found;
      break;
    }
    checked += outcome.checked;
  }
  if (found) {
    checked = found.position > first ? found.position - first : 0n;
  }

  // Events without a chain entry: everywhere for a whole-chain check, else
  // among the event_seq values the checked range covers.
  const unchained = await (unchainedEverywhere ?? selectUnchainedEvents(db, wholeChain ? undefined : eventSeqRange));
  const writtenOutside = BigInt(unchained.unchained);
  const unchainedCount = writtenOutside + BigInt(unchained.awaiting_seal);
  let unchainedBreak: auditV1.ChainBreak | undefined;
  if (writtenOutside > 0n && unchained.first_event_id) {
    const position = unchained.next_position === null ? headSequence + 1n : BigInt(unchained.next_position);
    if (!found || position < found.position) {
      found = undefined;
      checked = position > first ? position - first : 0n;
      unchainedBreak = {
        kind: ChainBreakKind.CHAIN_BREAK_KIND_INSERTED,
        sequenceNumber: String(position),
        eventId: unchained.first_event_id,
        expectedHash: '',
        actualHash: '',
        description: `event ${unchained.first_event_id} has no chain entry and was never queued for one: written outside the services; ${writtenOutside} such event(s)`,
      };
    }
  }

  const firstBreak = unchainedBreak ?? (found ? await describeBreak(db, found, headSequence, bounds.head_hash) : undefined);
  const lastChecked = checked > 0n ? first + checked - 1n : 0n;
  return {
    intact: firstBreak === undefined,
    checkedCount: String(checked),
    firstSequenceNumber: checked > 0n ? String(first) : '0',
    lastSequenceNumber: String(lastChecked),
    firstBreak,
    unchainedCount: String(unchainedCount),
    anchorHash: bounds.anchor_hash,
    anchorSequenceNumber: bounds.anchor_sequence,
    verifyTime,
  };
}

async function describeBreak(
  db: CommonQueryMethods,
  found: Candidate,
  headSequence: bigint,
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
      const before = await selectChainEntry(db, String(found.position - 1n));
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
