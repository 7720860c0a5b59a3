import { vitalsV1 } from '@clinical/contracts';
import { defineService, type ServiceBinding, type ServiceRuntime } from '@clinical/server-kit';
import { batchRecordVitalsHandler } from './vitals/batchRecordVitals.js';
import { getLatestVitalsHandler } from './vitals/getLatestVitals.js';
import type { IngestionDependencies } from './vitals/ingestionPool.js';
import { listVitalsHandler } from './vitals/listVitals.js';
import { recordVitalsHandler } from './vitals/recordVitals.js';
import { streamVitalsHandler } from './vitals/streamVitals.js';
import { summarizeVitalsHandler } from './vitals/summarizeVitals.js';

const READERS = ['admin', 'coordinator', 'investigator', 'monitor'] as const;
const WRITERS = ['admin', 'coordinator', 'investigator', 'service'] as const;

/** clinical.vitals.v1.VitalsService bound to its handlers and method policies. */
export function vitalsService(runtime: ServiceRuntime, dependencies: IngestionDependencies): ServiceBinding {
  return defineService(
    vitalsV1.VitalsServiceDefinition,
    {
      recordVitals: recordVitalsHandler(runtime),
      batchRecordVitals: batchRecordVitalsHandler(dependencies),
      streamVitals: streamVitalsHandler(dependencies),
      listVitals: listVitalsHandler(runtime),
      getLatestVitals: getLatestVitalsHandler(runtime),
      summarizeVitals: summarizeVitalsHandler(runtime),
    },
    {
      recordVitals: { roles: WRITERS, cost: 1 },
      // Bulk ingestion has its own cost class: one call carries many readings.
      batchRecordVitals: { roles: WRITERS, cost: 20 },
      streamVitals: { roles: WRITERS, cost: 50 },
      listVitals: { roles: READERS, cost: 5 },
      getLatestVitals: { roles: READERS, cost: 1 },
      summarizeVitals: { roles: READERS, cost: 5 },
    },
  );
}
