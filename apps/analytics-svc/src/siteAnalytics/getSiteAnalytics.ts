import type { analyticsV1 } from '@clinical/contracts';
import { NotFoundError } from '@clinical/errors';
import { canAccessSite, FieldValidator, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import type { CurrentRefresh } from '../refresh/currentRefresh.js';
import { analyticsCacheKeys, getResponseCodec, readThroughCache } from './analyticsCache.js';
import { selectViewRows } from './siteAnalyticsQueries.js';
import { toSiteAnalytics } from './siteAnalyticsRecord.js';
import { checkKeyField } from './validateSiteAnalytics.js';

/**
 * GetSiteAnalytics: one site and protocol, through the cache at the current
 * refresh. A site outside the caller's sites is NOT_FOUND before anything is
 * read, exactly like a pair with no data. Aggregates name no patient, so no
 * access event is recorded (README: auditing).
 */
export function getSiteAnalyticsHandler(runtime: ServiceRuntime, current: CurrentRefresh) {
  return async function getSiteAnalytics(
    request: analyticsV1.GetSiteAnalyticsRequest,
    context: HandlerContext,
  ): Promise<analyticsV1.GetSiteAnalyticsResponse> {
    const v = new FieldValidator();
    checkKeyField(v, 'site_id', request.siteId, true);
    checkKeyField(v, 'protocol_id', request.protocolId, true);
    v.throwIfInvalid();
    const { siteId, protocolId } = request;
    const notFound = () => new NotFoundError('site analytics', `${siteId}/${protocolId}`);
    if (!canAccessSite(context.principal, siteId)) {
      throw notFound();
    }

    const response = await readThroughCache(
      runtime,
      current,
      getResponseCodec,
      (refreshId) => analyticsCacheKeys.site(refreshId, siteId, protocolId),
      () => selectViewRows(runtime.pool, { siteId, protocolId, limit: 1 }),
      (read) => ({ siteAnalytics: read.rows[0] && toSiteAnalytics(read.rows[0]), asOfTime: read.asOf }),
    );
    const found = response.siteAnalytics;
    if (!found || found.siteId !== siteId || !canAccessSite(context.principal, found.siteId)) {
      throw notFound();
    }
    return response;
  };
}
