import { patientV1 } from '@clinical/contracts';
import { PermissionDeniedError } from '@clinical/errors';
import {
  canAccessSite,
  FieldValidator,
  messageCodec,
  runAuditedMutation,
  type HandlerContext,
  type ServiceRuntime,
} from '@clinical/server-kit';
import { cacheWrittenPatients } from './patientCache.js';
import { insertPatients, subjectNumberTaken, type NewPatient } from './patientQueries.js';
import { toPatientMessage } from './patientRecord.js';
import { validateNewPatient } from './validatePatient.js';

/** Most patients one BatchCreatePatients call may create. */
export const MAX_BATCH_PATIENTS = 1_000;

const responseCodec = messageCodec(patientV1.BatchCreatePatientsResponse);

/** Validates every entry; violations name the entry's index. */
function validateBatch(v: FieldValidator, request: patientV1.BatchCreatePatientsRequest): NewPatient[] {
  v.count('requests', request.requests.length, { min: 1, max: MAX_BATCH_PATIENTS });
  v.uuid('request_id', request.requestId, false);
  const firstIndexOfSubject = new Map<string, number>();
  const entries: NewPatient[] = [];
  request.requests.slice(0, MAX_BATCH_PATIENTS).forEach((entry, index) => {
    const enrollmentDate = validateNewPatient(v, `requests[${index}].patient`, entry.patient);
    const subject = entry.patient?.subjectNumber ?? '';
    const earlier = firstIndexOfSubject.get(subject);
    if (subject && earlier !== undefined) {
      v.add(`requests[${index}].patient.subject_number`, `duplicates requests[${earlier}]`);
    }
    firstIndexOfSubject.set(subject, earlier ?? index);
    if (entry.patient && enrollmentDate) {
      entries.push({ patient: entry.patient, enrollmentDate });
    }
  });
  return entries;
}

/**
 * BatchCreatePatients: all or none, in one audited transaction and one
 * set-based INSERT (one audit row per patient, by the row trigger). A failure
 * names the index of the entry at fault; nothing is written.
 */
export function batchCreatePatientsHandler(runtime: ServiceRuntime) {
  return async function batchCreatePatients(
    request: patientV1.BatchCreatePatientsRequest,
    context: HandlerContext,
  ): Promise<patientV1.BatchCreatePatientsResponse> {
    const v = new FieldValidator();
    const entries = validateBatch(v, request);
    v.throwIfInvalid();
    const forbidden = entries.findIndex(({ patient }) => !canAccessSite(context.principal, patient.siteId));
    if (forbidden >= 0) {
      throw new PermissionDeniedError(`requests[${forbidden}].patient.site_id: the caller has no access to this site`);
    }

    const written: { patient: patientV1.Patient; rowVersion: string }[] = [];
    const response = await runAuditedMutation(
      runtime,
      context,
      {
        request,
        requestType: patientV1.BatchCreatePatientsRequest,
        responseCodec,
      },
      async (transaction) => {
        written.length = 0;
        const rows = await insertPatients(transaction, entries);
        const bySubject = new Map(rows.map((row) => [row.subject_number, row]));
        const taken = entries.findIndex(({ patient }) => !bySubject.has(patient.subjectNumber));
        if (taken >= 0) {
          throw subjectNumberTaken(`requests[${taken}].patient.subject_number`);
        }
        for (const row of entries.map(({ patient }) => bySubject.get(patient.subjectNumber))) {
          if (row) {
            written.push({ patient: toPatientMessage(row), rowVersion: row.row_version });
          }
        }
        return { patients: written.map((entry) => entry.patient) };
      },
    );
    await cacheWrittenPatients(runtime, written);
    return response;
  };
}
