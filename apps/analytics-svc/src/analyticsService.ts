import { analyticsV1 } from '@clinical/contracts';
import { analyticsServicePolicies } from '@clinical/method-policies';
import { defineService, type ServiceBinding, type ServiceRuntime } from '@clinical/server-kit';
import type { AnalyticsConfig } from './analyticsConfig.js';
import type { CurrentRefresh } from './refresh/currentRefresh.js';
import { getAnalyticsFreshnessHandler } from './refresh/getAnalyticsFreshness.js';
import { refreshAnalyticsHandler } from './refresh/refreshAnalytics.js';
import type { ViewRefresher } from './refresh/viewRefresher.js';
import { getSiteAnalyticsHandler } from './siteAnalytics/getSiteAnalytics.js';
import { listSiteAnalyticsHandler } from './siteAnalytics/listSiteAnalytics.js';

/** What the handlers share beside the kit's runtime. */
export interface AnalyticsParts {
  readonly config: AnalyticsConfig;
  readonly refresher: ViewRefresher;
  readonly current: CurrentRefresh;
  /** This instance's name in the refresh log. */
  readonly replica: string;
}

/** clinical.analytics.v1.AnalyticsService bound to its handlers and method policies. */
export function analyticsService(runtime: ServiceRuntime, parts: AnalyticsParts): ServiceBinding {
  return defineService(
    analyticsV1.AnalyticsServiceDefinition,
    {
      getSiteAnalytics: getSiteAnalyticsHandler(runtime, parts.current),
      listSiteAnalytics: listSiteAnalyticsHandler(runtime, parts.current),
      refreshAnalytics: refreshAnalyticsHandler(parts.refresher, parts.replica),
      getAnalyticsFreshness: getAnalyticsFreshnessHandler(runtime, parts.config),
    },
    analyticsServicePolicies,
  );
}
