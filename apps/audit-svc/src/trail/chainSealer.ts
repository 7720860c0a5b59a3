import { sql, type DatabasePool } from '@clinical/db';
import { describeError, type Logger } from '@clinical/telemetry';
import { z } from 'zod';

/**
 * Chains every event committed so far that is still pending, in batches of
 * `batchSize` (one transaction each), and returns how many it sealed.
 *
 * A sealer that finds another one at work (another replica's tick) returns 0
 * at once, which suits the schedule. A caller that must see every committed
 * event chained when this returns (VerifyAuditTrail, the retention purge)
 * passes `waitForOtherSealers`: each batch then waits for the other sealer
 * to finish (`audit_chain_seal_pending_waiting`).
 */
export async function sealPendingEvents(
  pool: DatabasePool,
  batchSize: number,
  options: { readonly waitForOtherSealers?: boolean } = {},
): Promise<number> {
  const seal = options.waitForOtherSealers
    ? sql.fragment`audit_chain_seal_pending_waiting(${batchSize})`
    : sql.fragment`audit_chain_seal_pending(${batchSize})`;
  let sealed = 0;
  for (;;) {
    const count = await pool.oneFirst(sql.type(z.object({ sealed: z.number() }))`SELECT ${seal} AS sealed`);
    sealed += count;
    if (count < batchSize) {
      return sealed;
    }
  }
}

export interface ChainSealer {
  /** Stops the schedule and seals what is left. */
  stop(): Promise<void>;
}

/**
 * Seals pending audit events every `intervalMs`: the window during which a
 * committed event is not yet chained. Failures are logged (error class only)
 * and retried at the next tick; pending events stay protected by the
 * append-only rules meanwhile.
 */
export function startChainSealer(options: {
  readonly pool: DatabasePool;
  readonly intervalMs: number;
  readonly batchSize: number;
  readonly logger: Logger;
}): ChainSealer {
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  let consecutiveFailures = 0;
  const tick = () => {
    running = sealPendingEvents(options.pool, options.batchSize).then(
      () => {
        consecutiveFailures = 0;
      },
      (error: unknown) => {
        consecutiveFailures += 1;
        if (consecutiveFailures === 1 || consecutiveFailures % 50 === 0) {
          options.logger.warn({ error: describeError(error), consecutiveFailures }, 'sealing the audit chain failed; retrying');
        }
      },
    );
  };
  const timer = setInterval(() => {
    if (!stopped) {
      void running.then(tick);
    }
  }, options.intervalMs);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
      await sealPendingEvents(options.pool, options.batchSize).catch(() => {
        // Left pending: the next audit-svc to start seals it.
      });
    },
  };
}
