import { vitalsV1 } from '@clinical/contracts';
import { defineService, notYetServed, type ServiceBinding } from '@clinical/server-kit';

const READERS = ['admin', 'coordinator', 'investigator', 'monitor'] as const;
const WRITERS = ['admin', 'coordinator', 'investigator', 'service'] as const;

/** clinical.vitals.v1.VitalsService bound to its handlers and method policies. */
export function vitalsService(): ServiceBinding {
  return defineService(
    vitalsV1.VitalsServiceDefinition,
    {
      recordVitals: notYetServed('RecordVitals'),
      batchRecordVitals: notYetServed('BatchRecordVitals'),
      streamVitals: notYetServed('StreamVitals'),
      listVitals: notYetServed('ListVitals'),
      getLatestVitals: notYetServed('GetLatestVitals'),
      summarizeVitals: notYetServed('SummarizeVitals'),
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
