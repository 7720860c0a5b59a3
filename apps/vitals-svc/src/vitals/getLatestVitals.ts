import type { vitalsV1 } from '@clinical/contracts';
import { NotFoundError } from '@clinical/errors';
import { accessEventsOf, FieldValidator, readFromReplica, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { siteFilter } from './patientAccess.js';
import { toVitalSigns } from './vitalRecord.js';
import { patientIsVisible, selectLatestVitals } from './vitalsQueries.js';

/**
 * GetLatestVitals: the patient's reading with the greatest measurement_time
 * (then vital_id), from the top of vital_signs_patient_time_idx; unset when
 * the patient has none. Access is checked in the same statement. One access event per call.
 */
export function getLatestVitalsHandler(runtime: ServiceRuntime) {
  return async function getLatestVitals(
    request: vitalsV1.GetLatestVitalsRequest,
    context: HandlerContext,
  ): Promise<vitalsV1.GetLatestVitalsResponse> {
    const v = new FieldValidator();
    v.uuid('patient_id', request.patientId);
    v.throwIfInvalid();
    const patientId = request.patientId.toLowerCase();
    const sites = siteFilter(context.principal);
    const { row, visible } = await readFromReplica(runtime, context, async (db) => {
      const latest = await selectLatestVitals(db, patientId, sites);
      return { row: latest, visible: latest !== null || (await patientIsVisible(db, patientId, sites)) };
    });
    if (!visible) {
      throw new NotFoundError('patient', patientId);
    }
    runtime.accessRecorder.record(accessEventsOf(context, [{ entityType: 'vital_signs', entityId: patientId, patientId }]));
    return { reading: row ? toVitalSigns(row) : undefined };
  };
}
