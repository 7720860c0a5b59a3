import type { patientV1 } from '@clinical/contracts';
import { NotFoundError } from '@clinical/errors';
import {
  accessEventsOf,
  canAccessSite,
  FieldValidator,
  type HandlerContext,
  type ServiceRuntime,
  withEncoding,
} from '@clinical/server-kit';
import { encodedPatientCodec, encodePatient, getPatientResponseBytes, patientCacheKey } from './patientCache.js';
import { selectPatient } from './patientQueries.js';
import { toPatientMessage } from './patientRecord.js';

/**
 * GetPatient: from the cache or the database (one query for concurrent
 * misses), checked against the caller's sites either way, and recorded as an
 * access event. A patient at another site is NOT_FOUND, like a missing one.
 */
export function getPatientHandler(runtime: ServiceRuntime) {
  const ttlSeconds = runtime.config.cacheTtlSeconds.patient;
  return async function getPatient(
    request: patientV1.GetPatientRequest,
    context: HandlerContext,
  ): Promise<patientV1.GetPatientResponse> {
    const v = new FieldValidator();
    v.uuid('patient_id', request.patientId);
    v.throwIfInvalid();
    const patientId = request.patientId.toLowerCase();

    const entry = await runtime.cache.getOrLoad(patientCacheKey(patientId), encodedPatientCodec, ttlSeconds, async () => {
      const row = await selectPatient(runtime.pool, patientId);
      return row ? { value: encodePatient(toPatientMessage(row)), version: Number(row.row_version) } : undefined;
    });
    if (!entry || !canAccessSite(context.principal, entry.patient.siteId)) {
      throw new NotFoundError('patient', patientId);
    }

    runtime.accessRecorder.record(accessEventsOf(context, [{ entityType: 'patient', entityId: patientId, patientId }]));
    return withEncoding({ patient: entry.patient }, getPatientResponseBytes(entry));
  };
}
