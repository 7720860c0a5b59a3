import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { ServiceModule, ServiceRuntime } from '@clinical/server-kit';
import { loadAnalyticsConfig, type AnalyticsConfig } from './analyticsConfig.js';
import { analyticsService } from './analyticsService.js';
import { createCurrentRefresh } from './refresh/currentRefresh.js';
import { createRefreshMetrics, type RefreshMetrics } from './refresh/refreshMetrics.js';
import { startRefreshScheduler, type RefreshScheduler } from './refresh/refreshSchedule.js';
import { createViewRefresher, type ViewRefresher } from './refresh/viewRefresher.js';
import { warmSiteAnalyticsCache } from './siteAnalytics/warmSiteAnalyticsCache.js';

/** Background work of one running instance, stopped with it. */
interface Background {
  readonly refresher: ViewRefresher;
  readonly scheduler?: RefreshScheduler;
  readonly metrics: RefreshMetrics;
}

/**
 * analytics-svc: per-site analytics from the figures it keeps incrementally, and
 * the schedule that refreshes them. `config` defaults to the environment's
 * (read when the service starts).
 */
export function createAnalyticsServiceModule(config?: AnalyticsConfig): ServiceModule {
  const running = new WeakMap<ServiceRuntime, Background>();
  return {
    name: 'analytics-svc',
    createServices(runtime) {
      const settings = config ?? loadAnalyticsConfig();
      const replica = `${hostname()}/${process.pid}/${randomBytes(3).toString('hex')}`;
      const current = createCurrentRefresh(runtime);
      const metrics = createRefreshMetrics(current);
      const refresher = createViewRefresher({
        pool: runtime.pool,
        logger: runtime.logger,
        // The refresher's own commits reach the view-age gauge at once.
        current: {
          get: () => current.get(),
          advance: (generation) => {
            metrics.refreshed(generation);
            return current.advance(generation);
          },
        },
        statementTimeoutMs: settings.refreshTimeoutMs,
        beforeReaders: (refreshed) => warmSiteAnalyticsCache(runtime, refreshed),
        onRefreshEnded: metrics.refreshEnded,
      });
      const scheduler = settings.schedulerEnabled
        ? startRefreshScheduler({ pool: runtime.pool, logger: runtime.logger, config: settings, refresher, current, replica })
        : undefined;
      running.set(runtime, { refresher, scheduler, metrics });
      return [analyticsService(runtime, { config: settings, refresher, current, replica })];
    },
    async stop(runtime) {
      const background = running.get(runtime);
      running.delete(runtime);
      // The schedule first: no new tick once the refresher has stopped taking attempts.
      const schedulerStopped = background?.scheduler?.stop();
      await background?.refresher.cancel();
      await schedulerStopped;
      background?.metrics.stop();
    },
  };
}

/** analytics-svc configured from the environment. */
export const analyticsServiceModule: ServiceModule = createAnalyticsServiceModule();
