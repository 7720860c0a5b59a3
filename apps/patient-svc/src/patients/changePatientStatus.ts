import { patientV1 } from '@clinical/contracts';
import { AbortedError, FailedPreconditionError, NotFoundError } from '@clinical/errors';
import {
  accessibleSites,
  canAccessSite,
  FieldValidator,
  messageCodec,
  runAuditedMutation,
  type HandlerContext,
  type ServiceRuntime,
} from '@clinical/server-kit';
import { applyGuardedUpdate } from './applyGuardedUpdate.js';
import { cacheAnsweredPatient } from './patientCache.js';
import { selectPatient } from './patientQueries.js';
import { statusToName, toPatientMessage, versionOfEtag, type StatusName } from './patientRecord.js';
import { canTransition } from './statusTransitions.js';

const responseCodec = messageCodec(patientV1.ChangePatientStatusResponse);

/**
 * ChangePatientStatus: moves a patient along the documented state machine
 * (FAILED_PRECONDITION for any other move), at the etag the caller read, with
 * a reason that the audit trigger records beside the change.
 */
export function changePatientStatusHandler(runtime: ServiceRuntime) {
  return async function changePatientStatus(
    request: patientV1.ChangePatientStatusRequest,
    context: HandlerContext,
  ): Promise<patientV1.ChangePatientStatusResponse> {
    const v = new FieldValidator();
    v.uuid('patient_id', request.patientId);
    const target = statusToName.get(request.status);
    if (!target) {
      v.add('status', request.status === patientV1.PatientStatus.PATIENT_STATUS_UNSPECIFIED ? 'is required' : 'has an unsupported value');
    }
    v.string('reason', request.reason, { required: true, max: 500 });
    const expectedVersion = versionOfEtag(request.etag);
    if (!expectedVersion) {
      v.add('etag', request.etag ? 'is not an etag this service issued' : 'is required (from GetPatient)');
    }
    v.uuid('request_id', request.requestId, false);
    v.throwIfInvalid();

    const patientId = request.patientId.toLowerCase();
    // What this call's own attempt wrote and answered (a transaction retried by Slonik may run it more than once).
    let written: { answer: patientV1.ChangePatientStatusResponse; rowVersion: string } | undefined;
    const response = await runAuditedMutation(
      runtime,
      context,
      {
        request,
        requestType: patientV1.ChangePatientStatusRequest,
        reason: request.reason,
        responseCodec,
      },
      async (transaction) => {
        const current = await selectPatient(transaction, patientId);
        if (!current || !canAccessSite(context.principal, current.site_id)) {
          throw new NotFoundError('patient', patientId);
        }
        if (current.row_version !== expectedVersion) {
          throw new AbortedError('the patient changed since it was read (stale etag); read it again and retry');
        }
        if (!canTransition(current.status, target as StatusName)) {
          throw new FailedPreconditionError(`a patient cannot move from ${current.status} to ${target}`);
        }
        const row = await applyGuardedUpdate(transaction, {
          patientId,
          sites: accessibleSites(context.principal),
          expectedVersion: current.row_version,
          changes: { status: target },
        });
        const answer = { patient: toPatientMessage(row) };
        written = { answer, rowVersion: row.row_version };
        return answer;
      },
    );
    // Any other answer is a retry's stored first response (its writing attempt may have rolled back, or been another call's).
    await cacheAnsweredPatient(runtime, response.patient, written?.answer === response ? written.rowVersion : undefined);
    return response;
  };
}
