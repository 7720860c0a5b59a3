import { serviceMeter } from '@clinical/telemetry';
import type { CurrentRefresh } from './currentRefresh.js';
import type { RefreshGeneration, RefreshTrigger } from './refreshQueries.js';

/** Bucket bounds of the refresh duration histogram, in seconds: from a small change's fold to the default timeout. */
const REFRESH_DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/** How long a confirmed as-of time is trusted by the age gauge before it asks CurrentRefresh again. */
const RECHECK_AFTER_MS = 5_000;

export interface RefreshMetrics {
  /** For createViewRefresher's onRefreshEnded. */
  refreshEnded(trigger: RefreshTrigger, succeeded: boolean, seconds: number): void;
  /** A refresh committed: the figures' age starts again from its as-of time. */
  refreshed(generation: RefreshGeneration): void;
  /** Removes the gauge's callback (at stop). */
  stop(): void;
}

/**
 * analytics-svc's instruments: `clinical.analytics.refresh.duration`, the
 * seconds refresh attempts of this replica took (by trigger and outcome), and
 * `clinical.analytics.view.age`, the seconds since the as-of time of the
 * figures now served (the latest successful refresh's start, by any
 * replica). The age is read when a reader collects: the as-of time comes
 * from CurrentRefresh (one Redis GET; the log when Redis has none), asked
 * at most every few seconds, and from this replica's own refreshes at once.
 */
export function createRefreshMetrics(current: CurrentRefresh): RefreshMetrics {
  const meter = serviceMeter();
  const duration = meter.createHistogram('clinical.analytics.refresh.duration', {
    description: 'Duration of analytics refresh attempts of this replica, from start to commit or failure, by trigger and outcome',
    unit: 's',
    advice: { explicitBucketBoundaries: REFRESH_DURATION_BUCKETS },
  });
  const age = meter.createObservableGauge('clinical.analytics.view.age', {
    description: 'Seconds since the as-of time of the analytics served (the start of the latest successful refresh)',
    unit: 's',
  });
  const outcomes = new Map<string, { trigger: string; outcome: string }>();
  let latest: RefreshGeneration | null = null;
  let checkedAt = Number.NEGATIVE_INFINITY;
  let checking: Promise<void> | undefined;

  const note = (generation: RefreshGeneration | null) => {
    if (generation && (!latest || BigInt(generation.refresh_id) >= BigInt(latest.refresh_id))) {
      latest = generation;
    }
  };
  const check = () => {
    checking ??= current
      .get()
      .then(note, () => {
        // Redis and PostgreSQL both away: the last known age goes on.
      })
      .finally(() => {
        checkedAt = performance.now();
        checking = undefined;
      });
    return checking;
  };
  const observe: Parameters<typeof age.addCallback>[0] = async (result) => {
    if (performance.now() - checkedAt >= RECHECK_AFTER_MS) {
      await check();
    }
    if (latest) {
      result.observe(Math.max(0, (Date.now() - latest.started_at.getTime()) / 1_000));
    }
  };
  age.addCallback(observe);

  return {
    refreshEnded(trigger, succeeded, seconds) {
      const key = `${trigger}|${succeeded}`;
      let attributes = outcomes.get(key);
      if (!attributes) {
        attributes = { trigger, outcome: succeeded ? 'success' : 'failure' };
        outcomes.set(key, attributes);
      }
      duration.record(seconds, attributes);
    },
    refreshed: note,
    stop: () => age.removeCallback(observe),
  };
}
