import type { ServiceRuntime } from '@clinical/server-kit';
import type { RefreshGeneration } from '../refresh/refreshQueries.js';
import { analyticsCacheKeys, getResponseCodec } from './analyticsCache.js';
import { selectViewRows } from './siteAnalyticsQueries.js';
import { toSiteAnalytics } from './siteAnalyticsRecord.js';

/** Pairs written ahead; with more, the rest are loaded on first read. */
const MOST_WARMED_PAIRS = 10_000;

/**
 * Fills the cache with every pair's GetSiteAnalytics answer at a refresh that
 * just committed, before readers are moved to it: the first reads after a
 * refresh are then hits too, rather than a burst of loads on a database that
 * is still busy with the refresh. Skipped if a newer refresh already
 * committed (it warms its own).
 */
export async function warmSiteAnalyticsCache(runtime: ServiceRuntime, generation: RefreshGeneration): Promise<void> {
  const read = await selectViewRows(runtime.pool, { limit: MOST_WARMED_PAIRS });
  if (!read || read.refreshId !== generation.refresh_id) {
    return;
  }
  const ttlSeconds = runtime.config.cacheTtlSeconds.query;
  await Promise.all(
    read.rows.map((row) =>
      runtime.cache.store(analyticsCacheKeys.site(read.refreshId, row.site_id, row.protocol_id), getResponseCodec, ttlSeconds, {
        value: { siteAnalytics: toSiteAnalytics(row), asOfTime: read.asOf },
        version: Number(read.refreshId),
      }),
    ),
  );
}
