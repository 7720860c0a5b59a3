import type { vitalsV1 } from '@clinical/contracts';
import { NotFoundError } from '@clinical/errors';
import { accessEventsOf, FieldValidator, readFromReplica, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { siteFilter } from './patientAccess.js';
import { validateTimeRange } from './timeRange.js';
import { summarizeVitals as summarizeInDatabase, type SummaryRow } from './vitalsQueries.js';

const measure = (count: string, min: number | null, max: number | null, mean: number | null): vitalsV1.MeasureSummary => ({
  count,
  min: min ?? undefined,
  max: max ?? undefined,
  mean: mean ?? undefined,
});

function toResponse(row: SummaryRow): vitalsV1.SummarizeVitalsResponse {
  return {
    readingCount: row.reading_count,
    systolicBp: measure(row.systolic_count, row.systolic_min, row.systolic_max, row.systolic_mean),
    diastolicBp: measure(row.diastolic_count, row.diastolic_min, row.diastolic_max, row.diastolic_mean),
    heartRate: measure(row.heart_rate_count, row.heart_rate_min, row.heart_rate_max, row.heart_rate_mean),
    temperatureCelsius: measure(row.temperature_count, row.temperature_min, row.temperature_max, row.temperature_mean),
    firstMeasurementTime: row.first_measurement_time ?? undefined,
    lastMeasurementTime: row.last_measurement_time ?? undefined,
  };
}

/**
 * SummarizeVitals: count, min, max and mean of each measure over
 * [start_time, end_time), computed by PostgreSQL in one aggregate over the
 * patient's index range. One access event per call.
 */
export function summarizeVitalsHandler(runtime: ServiceRuntime) {
  return async function summarizeVitals(
    request: vitalsV1.SummarizeVitalsRequest,
    context: HandlerContext,
  ): Promise<vitalsV1.SummarizeVitalsResponse> {
    const v = new FieldValidator();
    v.uuid('patient_id', request.patientId);
    const range = validateTimeRange(v, request.startTime, request.endTime);
    v.throwIfInvalid();
    const patientId = request.patientId.toLowerCase();
    const row = await readFromReplica(runtime, context, (db) => summarizeInDatabase(db, patientId, siteFilter(context.principal), range));
    if (!row.visible) {
      throw new NotFoundError('patient', patientId);
    }
    runtime.accessRecorder.record(accessEventsOf(context, [{ entityType: 'vital_signs', entityId: patientId, patientId }]));
    return toResponse(row);
  };
}
