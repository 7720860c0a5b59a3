import { patientV1 } from '@clinical/contracts';
import { runIdempotent, withAuditContext } from '@clinical/db';
import { PermissionDeniedError } from '@clinical/errors';
import {
  auditContextOf,
  canAccessSite,
  FieldValidator,
  type HandlerContext,
  type ServiceRuntime,
} from '@clinical/server-kit';
import { patientCacheKey, patientCodec } from './patientCache.js';
import { insertPatient } from './patientQueries.js';
import { toPatientMessage } from './patientRecord.js';
import { validateNewPatient } from './validatePatient.js';

const responseCodec = {
  encode: (response: patientV1.CreatePatientResponse) => patientV1.CreatePatientResponse.encode(response).finish(),
  decode: (bytes: Uint8Array) => patientV1.CreatePatientResponse.decode(bytes),
};

/**
 * CreatePatient: validate, insert in a transaction carrying the audit context
 * (the trigger writes the audit row in it), then, after commit, cache the new
 * record. A request_id makes retries return the first response.
 */
export function createPatientHandler(runtime: ServiceRuntime) {
  return async function createPatient(
    request: patientV1.CreatePatientRequest,
    context: HandlerContext,
  ): Promise<patientV1.CreatePatientResponse> {
    const v = new FieldValidator();
    const enrollmentDate = validateNewPatient(v, 'patient', request.patient);
    v.uuid('request_id', request.requestId, false);
    v.throwIfInvalid();
    const patient = request.patient as patientV1.Patient;
    if (!canAccessSite(context.principal, patient.siteId)) {
      throw new PermissionDeniedError('the caller has no access to this site');
    }

    const idempotencyKey = request.requestId
      ? {
          scope: `PatientService/CreatePatient:${context.principal.sub}`,
          requestId: request.requestId,
          requestBytes: patientV1.CreatePatientRequest.encode({ ...request, requestId: '' }).finish(),
        }
      : undefined;
    let version: string | undefined;
    const response = await withAuditContext(runtime.pool, auditContextOf(context, request), (transaction) =>
      runIdempotent(transaction, idempotencyKey, responseCodec, async () => {
        const row = await insertPatient(transaction, patient, enrollmentDate as string);
        version = row.row_version;
        return { patient: toPatientMessage(row) };
      }),
    );

    if (response.patient && version !== undefined) {
      await runtime.cache.store(patientCacheKey(response.patient.patientId), patientCodec, runtime.config.cacheTtlSeconds.patient, {
        value: response.patient,
        version: Number(version),
      });
    }
    return response;
  };
}
