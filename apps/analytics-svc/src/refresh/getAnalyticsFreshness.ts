import type { analyticsV1 } from '@clinical/contracts';
import type { ServiceRuntime } from '@clinical/server-kit';
import type { AnalyticsConfig } from '../analyticsConfig.js';
import { durationOfMs } from './durations.js';
import { selectRefreshState } from './refreshQueries.js';
import { nextRefreshDue } from './refreshSchedule.js';

/**
 * GetAnalyticsFreshness: the shared refresh log and lock, read in one
 * statement, so every replica gives the same answer. The next refresh time is
 * the one the schedule computes (after failures, the backoff's).
 */
export function getAnalyticsFreshnessHandler(runtime: ServiceRuntime, config: AnalyticsConfig) {
  return async function getAnalyticsFreshness(): Promise<analyticsV1.GetAnalyticsFreshnessResponse> {
    const state = await selectRefreshState(runtime.pool);
    return {
      asOfTime: state.started_at ?? undefined,
      lastRefreshEndTime: state.finished_at ?? undefined,
      lastRefreshDuration: state.duration_ms === null ? undefined : durationOfMs(state.duration_ms),
      nextRefreshTime: nextRefreshDue(state, config),
      refreshInterval: durationOfMs(config.refreshIntervalMs),
      refreshRunning: state.refresh_running,
      runningRefreshStartTime: state.refresh_running ? (state.running_since ?? undefined) : undefined,
      consecutiveFailureCount: state.failure_count,
      lastFailureTime: state.last_failure_at ?? undefined,
    };
  };
}
