import { sql, type DatabasePool } from '@clinical/db';
import { serviceMeter } from '@clinical/telemetry';
import { z } from 'zod';

/** The backlog is counted up to this many events: past it, the gauge says this many (the sealer is then far behind anyway). */
export const CHAIN_BACKLOG_COUNT_LIMIT = 10_000;

/** A count is reused for this long, however many readers collect meanwhile. */
const RECOUNT_AFTER_MS = 10_000;

/**
 * Events committed and not yet chained (`audit_chain_pending`), at most
 * `limit`: an index-only scan of the queue's primary key that stops at the
 * limit, so its cost is bounded however far behind the sealer is.
 */
export async function countChainBacklog(pool: DatabasePool, limit = CHAIN_BACKLOG_COUNT_LIMIT): Promise<number> {
  return pool.oneFirst(sql.type(z.object({ pending: z.number() }))`
    SELECT count(*)::int AS pending FROM (SELECT 1 FROM audit_chain_pending LIMIT ${limit}) AS queued
  `);
}

/**
 * `clinical.audit.chain.pending`: the audit events waiting for the sealer
 * (all replicas' queue), counted when a reader collects, at most once every
 * ten seconds and at most CHAIN_BACKLOG_COUNT_LIMIT. Returns the removal of
 * the gauge's callback (at stop).
 */
export function observeChainBacklog(pool: DatabasePool): () => void {
  const backlog = serviceMeter().createObservableGauge('clinical.audit.chain.pending', {
    description: `Audit events committed and not yet sealed into the hash chain (counted up to ${CHAIN_BACKLOG_COUNT_LIMIT}, at most every 10 s)`,
    unit: '{event}',
  });
  let last: number | undefined;
  let countedAt = Number.NEGATIVE_INFINITY;
  let counting: Promise<void> | undefined;
  const recount = () => {
    counting ??= countChainBacklog(pool)
      .then(
        (pending) => {
          last = pending;
        },
        () => {
          // The database is away: the gauge keeps the last count until it answers.
        },
      )
      .finally(() => {
        countedAt = performance.now();
        counting = undefined;
      });
    return counting;
  };
  const observe: Parameters<typeof backlog.addCallback>[0] = async (result) => {
    if (performance.now() - countedAt >= RECOUNT_AFTER_MS) {
      await recount();
    }
    if (last !== undefined) {
      result.observe(last);
    }
  };
  backlog.addCallback(observe);
  return () => backlog.removeCallback(observe);
}
