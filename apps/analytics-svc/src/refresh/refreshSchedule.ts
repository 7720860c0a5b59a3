import type { DatabasePool } from '@clinical/db';
import { describeError, type Logger } from '@clinical/telemetry';
import type { AnalyticsConfig } from '../analyticsConfig.js';
import type { CurrentRefresh } from './currentRefresh.js';
import { selectRefreshState, type RefreshAttempt, type RefreshStateRow } from './refreshQueries.js';
import type { ViewRefresher } from './viewRefresher.js';

/** How often a replica looks again while another one is refreshing. */
const RUNNING_POLL_MS = 5_000;
/** Longest sleep between ticks: each tick also confirms the current refresh to readers (CurrentRefresh). */
const RECONCILE_MS = 60_000;

/** Wait before retry number `failures` (1 for the first): doubling from the base, capped. */
export function retryBackoffMs(config: Pick<AnalyticsConfig, 'retryBaseMs' | 'retryMaxMs'>, failures: number): number {
  if (failures <= 0) {
    return 0;
  }
  return Math.min(config.retryBaseMs * 2 ** Math.min(failures - 1, 40), config.retryMaxMs);
}

/**
 * When the next scheduled refresh is due, from the shared log alone (so every
 * replica computes the same time): one interval after the start of the last
 * success, and, after failures, not before the last failure plus its backoff.
 */
export function nextRefreshDue(
  state: Pick<RefreshStateRow, 'started_at' | 'failure_count' | 'last_failure_at'>,
  config: Pick<AnalyticsConfig, 'refreshIntervalMs' | 'retryBaseMs' | 'retryMaxMs'>,
): Date {
  const regular = state.started_at ? state.started_at.getTime() + config.refreshIntervalMs : 0;
  const retry =
    state.failure_count > 0 && state.last_failure_at
      ? state.last_failure_at.getTime() + retryBackoffMs(config, state.failure_count)
      : 0;
  return new Date(Math.max(regular, retry));
}

export interface RefreshScheduler {
  /** Stops the timer and waits for a scheduled attempt in progress (cancel it first with the refresher). */
  stop(): Promise<void>;
}

/**
 * The refresh schedule of one replica. Each tick reads the shared state; when
 * a refresh is due it tries the lock (the loser skips), checks again under
 * the lock that no other replica refreshed meanwhile, and refreshes. Then it
 * sleeps until the next due time (a minute at most), computed from the
 * database's clock, so replicas' clocks need not agree.
 */
export function startRefreshScheduler(options: {
  readonly pool: DatabasePool;
  readonly logger: Logger;
  readonly config: AnalyticsConfig;
  readonly refresher: ViewRefresher;
  readonly current: CurrentRefresh;
  readonly replica: string;
}): RefreshScheduler {
  const { pool, logger, config, refresher, current } = options;
  const attempt: RefreshAttempt = { trigger: 'SCHEDULED', replica: options.replica };
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> | undefined;
  let stopped = false;
  // Failed ticks in a row on this replica, for when the database cannot even tell the state.
  let localFailures = 0;

  const isDue = (state: RefreshStateRow) => nextRefreshDue(state, config).getTime() <= state.database_now.getTime();

  async function tick(): Promise<number> {
    const state = await selectRefreshState(pool);
    if (state.refresh_id !== null && state.started_at !== null) {
      await current.advance({ refresh_id: state.refresh_id, started_at: state.started_at });
    }
    if (state.refresh_running) {
      return Math.min(config.refreshIntervalMs, RUNNING_POLL_MS);
    }
    if (!isDue(state)) {
      return Math.min(nextRefreshDue(state, config).getTime() - state.database_now.getTime(), RECONCILE_MS);
    }
    const run = await refresher.withLock(attempt, async (refresh, transaction) => {
      // Another replica may have refreshed between our look and our lock.
      if (!isDue(await selectRefreshState(transaction))) {
        return undefined;
      }
      return refresh();
    });
    if (run.ran && run.value) {
      logger.info({ refreshId: run.value.refresh_id, durationMs: run.value.duration_ms, ...run.value.folded }, 'analytics refreshed');
    }
    // Look again at once: the next due time follows from what just happened.
    return run.ran ? 0 : Math.min(config.refreshIntervalMs, RUNNING_POLL_MS);
  }

  function schedule(delayMs: number): void {
    if (stopped) {
      return;
    }
    timer = setTimeout(() => {
      timer = undefined;
      inFlight = tick()
        .then((next) => {
          localFailures = 0;
          return next;
        })
        .catch((error: unknown) => {
          localFailures += 1;
          if (!stopped) {
            logger.warn({ error: describeError(error), failures: localFailures }, 'analytics refresh schedule: attempt failed');
          }
          return retryBackoffMs(config, localFailures);
        })
        .then((next) => {
          inFlight = undefined;
          schedule(next);
        });
    }, Math.max(0, delayMs));
    timer.unref();
  }

  schedule(0);
  return {
    async stop() {
      stopped = true;
      if (timer) {
        clearTimeout(timer);
        timer = undefined;
      }
      await inFlight;
    },
  };
}
