import { vitalsV1 } from '@clinical/contracts';
import { vitalsServicePolicies } from '@clinical/method-policies';
import { answeringConsistencyToken, defineService, type ServiceBinding, type ServiceRuntime } from '@clinical/server-kit';
import { batchRecordVitalsHandler } from './vitals/batchRecordVitals.js';
import { getLatestVitalsHandler } from './vitals/getLatestVitals.js';
import type { IngestionDependencies } from './vitals/ingestionPool.js';
import { listVitalsHandler } from './vitals/listVitals.js';
import { recordVitalsHandler } from './vitals/recordVitals.js';
import { streamVitalsHandler } from './vitals/streamVitals.js';
import { StreamVitalsMessage } from './vitals/streamVitalsMessage.js';
import { summarizeVitalsHandler } from './vitals/summarizeVitals.js';

/** VitalsService as generated, but for StreamVitals's messages, decoded by the service's own decoder (into columns). */
const vitalsServiceDefinition = {
  ...vitalsV1.VitalsServiceDefinition,
  methods: {
    ...vitalsV1.VitalsServiceDefinition.methods,
    streamVitals: { ...vitalsV1.VitalsServiceDefinition.methods.streamVitals, requestType: StreamVitalsMessage },
  },
} as const;

/** clinical.vitals.v1.VitalsService bound to its handlers and method policies. */
export function vitalsService(runtime: ServiceRuntime, dependencies: IngestionDependencies): ServiceBinding {
  return defineService(
    vitalsServiceDefinition,
    {
      recordVitals: answeringConsistencyToken(runtime, recordVitalsHandler(runtime)),
      batchRecordVitals: answeringConsistencyToken(runtime, batchRecordVitalsHandler(dependencies)),
      streamVitals: answeringConsistencyToken(runtime, streamVitalsHandler(dependencies)),
      listVitals: listVitalsHandler(runtime),
      getLatestVitals: getLatestVitalsHandler(runtime),
      summarizeVitals: summarizeVitalsHandler(runtime),
    },
    vitalsServicePolicies,
  );
}
