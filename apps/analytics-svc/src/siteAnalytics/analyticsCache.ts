import { createHash } from 'node:crypto';
import type { CacheCodec } from '@clinical/cache';
import { analyticsV1 } from '@clinical/contracts';
import { UnavailableError } from '@clinical/errors';
import type { ServiceRuntime } from '@clinical/server-kit';
import type { CurrentRefresh } from '../refresh/currentRefresh.js';
import type { RefreshGeneration } from '../refresh/refreshQueries.js';
import type { ViewRead } from './siteAnalyticsQueries.js';

/**
 * Redis keys of analytics results. Each names the refresh whose figures it
 * holds, so a refresh moves every reader to new keys at once: no cached
 * result outlives the refresh that replaced it (the old keys just expire).
 */
export const analyticsCacheKeys = {
  site: (refreshId: string, siteId: string, protocolId: string): string =>
    `analytics:${refreshId}:site:${encodeURIComponent(siteId)}:${encodeURIComponent(protocolId)}`,
  /** A List page depends on the caller's sites, the filters, the position and the size: all hashed into the key. */
  page: (refreshId: string, request: unknown): string =>
    `analytics:${refreshId}:page:${createHash('sha256').update(JSON.stringify(request)).digest('base64url')}`,
};

export const getResponseCodec: CacheCodec<analyticsV1.GetSiteAnalyticsResponse> = {
  encode: (response) => analyticsV1.GetSiteAnalyticsResponse.encode(response).finish(),
  decode: (bytes) => analyticsV1.GetSiteAnalyticsResponse.decode(bytes),
};

export const listResponseCodec: CacheCodec<analyticsV1.ListSiteAnalyticsResponse> = {
  encode: (response) => analyticsV1.ListSiteAnalyticsResponse.encode(response).finish(),
  decode: (bytes) => analyticsV1.ListSiteAnalyticsResponse.decode(bytes),
};

/** A load that found a newer refresh than the key it was loading for: served, never cached under that key. */
class NewerThanKey<T> extends Error {
  constructor(
    readonly value: T,
    readonly generation: RefreshGeneration,
  ) {
    super('the figures were refreshed during the load');
    this.name = 'NewerThanKey';
  }
}

/**
 * Reads through the cache at the current refresh: finds the latest refresh
 * (its id names the key), then returns the cached result or loads it. The
 * load reads figures and refresh in one snapshot; if a refresh committed in
 * between, its result is served with its own as-of time, not cached under the
 * older key, and the current refresh is moved forward.
 * @throws UnavailableError when no refresh is on record.
 */
export async function readThroughCache<T>(
  runtime: ServiceRuntime,
  current: CurrentRefresh,
  codec: CacheCodec<T>,
  keyOf: (refreshId: string) => string,
  load: () => Promise<ViewRead | null>,
  toResult: (read: ViewRead) => T,
): Promise<T> {
  const latest = await current.get();
  if (!latest) {
    throw new UnavailableError('analytics have not been computed yet, retry shortly');
  }
  try {
    const result = await runtime.cache.getOrLoad(keyOf(latest.refresh_id), codec, runtime.config.cacheTtlSeconds.query, async () => {
      const read = await load();
      if (!read) {
        throw new UnavailableError('analytics have not been computed yet, retry shortly');
      }
      if (read.refreshId !== latest.refresh_id) {
        throw new NewerThanKey(toResult(read), { refresh_id: read.refreshId, started_at: read.asOf });
      }
      return { value: toResult(read), version: Number(read.refreshId) };
    });
    return result as T;
  } catch (error) {
    if (error instanceof NewerThanKey) {
      await current.advance(error.generation);
      return error.value as T;
    }
    throw error;
  }
}
