import { patientV1 } from '@clinical/contracts';
import { mapDatabaseError } from '@clinical/db';
import { AlreadyExistsError, PermissionDeniedError } from '@clinical/errors';
import {
  canAccessSite,
  FieldValidator,
  messageCodec,
  runAuditedMutation,
  type HandlerContext,
  type ServiceRuntime,
} from '@clinical/server-kit';
import { cacheWrittenPatients } from './patientCache.js';
import { insertPatient, subjectNumberTaken } from './patientQueries.js';
import { toPatientMessage } from './patientRecord.js';
import { validateNewPatient } from './validatePatient.js';

const responseCodec = messageCodec(patientV1.CreatePatientResponse);

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

    let rowVersion: string | undefined;
    const response = await runAuditedMutation(
      runtime,
      context,
      {
        request,
        requestType: patientV1.CreatePatientRequest,
        responseCodec,
      },
      async (transaction) => {
        const row = await insertPatient(transaction, { patient, enrollmentDate: enrollmentDate as string }).catch((error: unknown) => {
          // The unique index: the same answer as BatchCreatePatients gives, naming the field.
          throw mapDatabaseError(error) instanceof AlreadyExistsError ? subjectNumberTaken('patient.subject_number', error) : error;
        });
        rowVersion = row.row_version;
        return { patient: toPatientMessage(row) };
      },
    );
    if (response.patient && rowVersion) {
      await cacheWrittenPatients(runtime, [{ patient: response.patient, rowVersion }]);
    }
    return response;
  };
}
