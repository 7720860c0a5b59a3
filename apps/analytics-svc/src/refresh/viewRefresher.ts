import { setTimeout as delay } from 'node:timers/promises';
import { sql, type CommonQueryMethods, type DatabasePool } from '@clinical/db';
import { UnavailableError } from '@clinical/errors';
import { describeError, type Logger } from '@clinical/telemetry';
import { z } from 'zod';
import type { CurrentRefresh } from './currentRefresh.js';
import {
  cancelBackend,
  insertFailedRefresh,
  refreshFiguresAndLog,
  tryLockRefresh,
  unlockRefresh,
  type RefreshAttempt,
  type RefreshedRow,
  type RefreshTrigger,
} from './refreshQueries.js';

/** What a refresh body got: either the lock (and its result) or nothing, because another refresh holds it. */
export type LockedRun<T> = { readonly ran: true; readonly value: T } | { readonly ran: false };

/**
 * Runs one refresh attempt inside the lock's transaction. `refresh` folds the
 * changes into the figures and writes its log row; a body may decline
 * (return without calling it) or wrap it (idempotency).
 */
export type RefreshBody<T> = (refresh: () => Promise<RefreshedRow>, transaction: CommonQueryMethods) => Promise<T>;

export interface ViewRefresher {
  /**
   * Takes the refresh lock without waiting, on a connection of its own, and
   * runs `body` in a REPEATABLE READ transaction there. Returns
   * `{ ran: false }` when another session (this replica or another) holds the
   * lock. After a successful refresh commits, `beforeReaders` runs, then
   * readers are moved to it (CurrentRefresh), all before this returns. A
   * failed refresh is rolled back (the figures stay as they were, readable,
   * and the changes it had consumed stay queued), logged as FAILED, and
   * rethrown.
   */
  withLock<T>(attempt: RefreshAttempt, body: RefreshBody<T>): Promise<LockedRun<T>>;
  /**
   * At shutdown: refuses new attempts (UNAVAILABLE), cancels the refresh this
   * replica runs, if any, without logging it as a failure, and returns when
   * no attempt is left.
   */
  cancel(): Promise<void>;
}

/** How often cancel() repeats itself while an attempt is still running. */
const CANCEL_REPEAT_MS = 100;

export function createViewRefresher(options: {
  readonly pool: DatabasePool;
  readonly logger: Logger;
  readonly current: CurrentRefresh;
  readonly statementTimeoutMs: number;
  /** Runs after a refresh committed, before readers are moved to it (cache warming); its failure only delays them. */
  readonly beforeReaders?: (refreshed: RefreshedRow) => Promise<void>;
  /**
   * Told when a refresh this replica started has committed or failed (not
   * when it was cancelled at shutdown), with the seconds from its start to
   * the commit or failure (metrics).
   */
  readonly onRefreshEnded?: (trigger: RefreshTrigger, succeeded: boolean, seconds: number) => void;
}): ViewRefresher {
  const { pool, logger } = options;
  let runningPid: number | undefined;
  // Attempts not yet finished: a cancelled statement must return before its connection can close.
  const inFlight = new Set<Promise<unknown>>();
  let stopping = false;

  const refuseWhenStopping = () => {
    if (stopping) {
      throw new UnavailableError('this replica is stopping; retry on another one');
    }
  };

  return {
    async withLock(attempt, body) {
      refuseWhenStopping();
      // The lock is a session lock: it needs the same connection from try-lock to unlock.
      const run = pool.connect(async (connection) => {
        const lock = await tryLockRefresh(connection);
        if (!lock.acquired) {
          return { ran: false } as const;
        }
        runningPid = lock.pid;
        let refreshStarted = false;
        let refreshStartedAt = 0;
        let refreshed: RefreshedRow | undefined;
        const secondsSinceStart = () => (performance.now() - refreshStartedAt) / 1_000;
        try {
          const value = await connection.transaction(async (transaction) => {
            // One snapshot for the whole attempt: the changes it consumes are exactly those whose
            // data it reads, and the scheduled check under the lock sees the log as of that snapshot.
            await transaction.query(sql.type(z.object({}))`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`);
            return body(async () => {
              refuseWhenStopping();
              refreshStarted = true;
              refreshStartedAt = performance.now();
              refreshed = await refreshFiguresAndLog(transaction, options.statementTimeoutMs, attempt);
              return refreshed;
            }, transaction);
          });
          if (refreshed) {
            options.onRefreshEnded?.(attempt.trigger, true, secondsSinceStart());
            const committed = refreshed;
            await options.beforeReaders?.(committed).catch((error: unknown) => {
              logger.warn({ error: describeError(error) }, 'analytics cache warming failed; reads will load');
            });
            await options.current.advance(committed);
          }
          return { ran: true, value } as const;
        } catch (error) {
          if (refreshStarted && !stopping) {
            options.onRefreshEnded?.(attempt.trigger, false, secondsSinceStart());
            logger.warn({ trigger: attempt.trigger, error: describeError(error) }, 'analytics refresh failed');
            await insertFailedRefresh(connection, attempt, lock.attempted_at, describeError(error)).catch((logError: unknown) => {
              logger.warn({ error: describeError(logError) }, 'could not log the failed analytics refresh');
            });
          }
          throw error;
        } finally {
          runningPid = undefined;
          // If this fails the session is broken, and its end releases the lock.
          await unlockRefresh(connection).catch(() => {});
        }
      });
      inFlight.add(run);
      void run.catch(() => {}).finally(() => inFlight.delete(run));
      return run;
    },
    async cancel() {
      stopping = true;
      // Until every attempt has returned: a cancel that reaches PostgreSQL between two statements
      // of an attempt cancels nothing, so it is sent again.
      while (inFlight.size > 0) {
        if (runningPid !== undefined) {
          await cancelBackend(pool, runningPid).catch(() => {});
        }
        await Promise.race([Promise.allSettled(inFlight), delay(CANCEL_REPEAT_MS)]);
      }
    },
  };
}
