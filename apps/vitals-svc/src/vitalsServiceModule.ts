import type { ServiceModule, ServiceRuntime } from '@clinical/server-kit';
import type pg from 'pg';
import { vitalsService } from './vitalsService.js';
import { createIngestionPool } from './vitals/ingestionPool.js';

const ingestionPools = new WeakMap<ServiceRuntime, pg.Pool>();

/** vitals-svc: vital-sign ingestion and time-range queries. */
export const vitalsServiceModule: ServiceModule = {
  name: 'vitals-svc',
  createServices: (runtime) => {
    const ingestionPool = createIngestionPool(runtime.config);
    ingestionPools.set(runtime, ingestionPool);
    return [vitalsService(runtime, { ingestionPool })];
  },
  async stop(runtime) {
    await ingestionPools.get(runtime)?.end();
  },
};
