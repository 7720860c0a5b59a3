import { analyticsV1 } from '@clinical/contracts';
import { defineService, notYetServed, type ServiceBinding } from '@clinical/server-kit';

const READERS = ['admin', 'coordinator', 'investigator', 'monitor'] as const;

/** clinical.analytics.v1.AnalyticsService bound to its handlers and method policies. */
export function analyticsService(): ServiceBinding {
  return defineService(
    analyticsV1.AnalyticsServiceDefinition,
    {
      getSiteAnalytics: notYetServed('GetSiteAnalytics'),
      listSiteAnalytics: notYetServed('ListSiteAnalytics'),
      refreshAnalytics: notYetServed('RefreshAnalytics'),
      getAnalyticsFreshness: notYetServed('GetAnalyticsFreshness'),
    },
    {
      getSiteAnalytics: { roles: READERS, cost: 1 },
      listSiteAnalytics: { roles: READERS, cost: 5 },
      refreshAnalytics: { roles: ['admin'], cost: 100 },
      getAnalyticsFreshness: { roles: READERS, cost: 1 },
    },
  );
}
