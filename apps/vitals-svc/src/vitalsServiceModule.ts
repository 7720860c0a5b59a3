import type { ServiceModule, ServiceRuntime } from '@clinical/server-kit';
import type pg from 'pg';
import { vitalsService } from './vitalsService.js';
import { createIngestionPool } from './vitals/ingestionPool.js';
import { PageTokenCodec } from './vitals/pageToken.js';

const ingestionPools = new WeakMap<ServiceRuntime, pg.Pool>();

/**
 * The key of ListVitals page tokens: VITALS_PAGE_TOKEN_SECRET when set, else
 * derived from JWT_SECRET (shared by every replica either way), else a random
 * key (tokens then only work on this process, and the log says so).
 */
function pageTokenCodec(runtime: ServiceRuntime): PageTokenCodec {
  const secret = process.env.VITALS_PAGE_TOKEN_SECRET || runtime.config.jwt.secret;
  if (secret) {
    return PageTokenCodec.fromSecret(secret);
  }
  runtime.logger.warn('no VITALS_PAGE_TOKEN_SECRET or JWT_SECRET: ListVitals page tokens only work on this process');
  return PageTokenCodec.ephemeral();
}

/** vitals-svc: vital-sign ingestion and time-range queries. */
export const vitalsServiceModule: ServiceModule = {
  name: 'vitals-svc',
  createServices: (runtime) => {
    const ingestionPool = createIngestionPool(runtime.config);
    ingestionPools.set(runtime, ingestionPool);
    return [vitalsService(runtime, { ingestionPool, pageTokens: pageTokenCodec(runtime) })];
  },
  async stop(runtime) {
    await ingestionPools.get(runtime)?.end();
  },
};
