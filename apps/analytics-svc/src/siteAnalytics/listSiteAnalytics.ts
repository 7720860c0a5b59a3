import type { analyticsV1 } from '@clinical/contracts';
import { InvalidArgumentError, UnavailableError } from '@clinical/errors';
import {
  accessibleSites,
  canAccessSite,
  FieldValidator,
  pageSizeOf,
  type Cursor,
  type HandlerContext,
  type ServiceRuntime,
} from '@clinical/server-kit';
import type { CurrentRefresh } from '../refresh/currentRefresh.js';
import { analyticsCacheKeys, listResponseCodec, readThroughCache } from './analyticsCache.js';
import { selectViewRows } from './siteAnalyticsQueries.js';
import { toSiteAnalytics } from './siteAnalyticsRecord.js';
import { checkKeyField, PAGE_SIZE } from './validateSiteAnalytics.js';

/** Where a page ends: the last (site_id, protocol_id) it returned, from a decoded page token [site_id, protocol_id]. */
function positionOf(cursor: Cursor): { siteId: string; protocolId: string } {
  const [siteId, protocolId, ...rest] = cursor;
  if (rest.length === 0 && typeof siteId === 'string' && siteId.length <= 200 && typeof protocolId === 'string' && protocolId.length <= 200) {
    return { siteId, protocolId };
  }
  throw new InvalidArgumentError({ field: 'page_token', description: 'is not a page token of this method' });
}

/**
 * ListSiteAnalytics: keyset pages over (site_id, protocol_id) of the caller's
 * sites, through the cache at the current refresh. Tokens (the kit's
 * `runtime.pageTokens`) carry the position only, so a page after a refresh
 * continues where the last one ended, with the new as_of_time. A site filter
 * outside the caller's sites is an empty list, indistinguishable from a site
 * without data.
 */
export function listSiteAnalyticsHandler(runtime: ServiceRuntime, current: CurrentRefresh) {
  return async function listSiteAnalytics(
    request: analyticsV1.ListSiteAnalyticsRequest,
    context: HandlerContext,
  ): Promise<analyticsV1.ListSiteAnalyticsResponse> {
    const v = new FieldValidator();
    if (request.pageSize < 0) {
      v.add('page_size', 'must not be negative');
    }
    checkKeyField(v, 'site_id', request.siteId, false);
    checkKeyField(v, 'protocol_id', request.protocolId, false);
    v.throwIfInvalid();
    const pageSize = pageSizeOf(request.pageSize, PAGE_SIZE);
    const filters = { siteId: request.siteId, protocolId: request.protocolId };
    const cursor = runtime.pageTokens.decode(request.pageToken, filters);
    const after = cursor ? positionOf(cursor) : undefined;

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
            read.rows.length > pageSize && last ? runtime.pageTokens.encode([last.site_id, last.protocol_id], filters) : '',
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
