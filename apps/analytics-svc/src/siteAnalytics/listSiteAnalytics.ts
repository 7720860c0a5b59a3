import type { analyticsV1 } from '@clinical/contracts';
import { UnavailableError } from '@clinical/errors';
import { accessibleSites, canAccessSite, FieldValidator, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import type { CurrentRefresh } from '../refresh/currentRefresh.js';
import { analyticsCacheKeys, listResponseCodec, readThroughCache } from './analyticsCache.js';
import type { PageTokenCodec } from './pageToken.js';
import { selectViewRows } from './siteAnalyticsQueries.js';
import { toSiteAnalytics } from './siteAnalyticsRecord.js';
import { checkKeyField, checkPageSize } from './validateSiteAnalytics.js';

/**
 * ListSiteAnalytics: keyset pages over (site_id, protocol_id) of the caller's
 * sites, through the cache at the current refresh. Tokens carry the position
 * only, so a page after a refresh continues where the last one ended, with
 * the new as_of_time. A site filter outside the caller's sites is an empty
 * list, indistinguishable from a site without data.
 */
export function listSiteAnalyticsHandler(runtime: ServiceRuntime, current: CurrentRefresh, pageTokens: PageTokenCodec) {
  return async function listSiteAnalytics(
    request: analyticsV1.ListSiteAnalyticsRequest,
    context: HandlerContext,
  ): Promise<analyticsV1.ListSiteAnalyticsResponse> {
    const v = new FieldValidator();
    const pageSize = checkPageSize(v, request.pageSize);
    checkKeyField(v, 'site_id', request.siteId, false);
    checkKeyField(v, 'protocol_id', request.protocolId, false);
    v.throwIfInvalid();
    const filters = { siteId: request.siteId, protocolId: request.protocolId };
    const after = request.pageToken ? pageTokens.decode(request.pageToken, filters) : undefined;

    const sites = accessibleSites(context.principal);
    const scope = sites ? [...new Set(sites)].sort() : undefined;
    if (request.siteId && !canAccessSite(context.principal, request.siteId)) {
      // Nothing of that site may be shown; the as-of time is still the current one.
      const latest = await current.get();
      if (!latest) {
        throw new UnavailableError('analytics have not been computed yet, retry shortly');
      }
      return { siteAnalytics: [], nextPageToken: '', asOfTime: latest.started_at };
    }

    const response = await readThroughCache(
      runtime,
      current,
      listResponseCodec,
      (refreshId) => analyticsCacheKeys.page(refreshId, { scope: scope ?? '*', ...filters, after, pageSize }),
      () =>
        selectViewRows(runtime.pool, {
          sites: scope,
          siteId: request.siteId || undefined,
          protocolId: request.protocolId || undefined,
          after,
          limit: pageSize + 1,
        }),
      (read) => {
        const rows = read.rows.slice(0, pageSize);
        const last = rows.at(-1);
        return {
          siteAnalytics: rows.map(toSiteAnalytics),
          nextPageToken:
            read.rows.length > pageSize && last
              ? pageTokens.encode({ siteId: last.site_id, protocolId: last.protocol_id }, filters)
              : '',
          asOfTime: read.asOf,
        };
      },
    );
    // Cached pages are keyed by the caller's sites; this check keeps it so should a key ever be shared.
    return {
      ...response,
      siteAnalytics: response.siteAnalytics.filter((row) => canAccessSite(context.principal, row.siteId)),
    };
  };
}
