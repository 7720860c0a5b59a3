import { patientV1 } from '@clinical/contracts';
import {
  accessibleSites,
  FieldValidator,
  messageCodec,
  runAuditedMutation,
  todayUtc,
  type HandlerContext,
  type ServiceRuntime,
} from '@clinical/server-kit';
import { cacheAnsweredPatient } from './patientCache.js';
import type { PatientChanges } from './patientQueries.js';
import { toPatientMessage, versionOfEtag } from './patientRecord.js';
import { applyGuardedUpdate } from './applyGuardedUpdate.js';
import { EARLIEST_ENROLLMENT, validateDemographics, validateMedicalHistory } from './validatePatient.js';

const UPDATABLE = ['enrollment_date', 'treatment_arm', 'demographics', 'medical_history'] as const;
const IMMUTABLE = ['patient_id', 'subject_number', 'site_id', 'protocol_id', 'create_time', 'update_time', 'etag'];

const responseCodec = messageCodec(patientV1.UpdatePatientResponse);

/** The changes a request asks for, with every violation collected in `v`. */
function changesOf(v: FieldValidator, request: patientV1.UpdatePatientRequest): PatientChanges {
  const patient = request.patient ?? patientV1.Patient.fromPartial({});
  const paths = request.updateMask ?? [];
  if (paths.length === 0) {
    v.add('update_mask', 'must name at least one field (or "*")');
  }
  const selected = new Set<string>();
  paths.forEach((path, index) => {
    if (path === '*') {
      UPDATABLE.forEach((field) => selected.add(field));
    } else if ((UPDATABLE as readonly string[]).includes(path)) {
      selected.add(path);
    } else if (path === 'status') {
      v.add(`update_mask.paths[${index}]`, 'status changes go through ChangePatientStatus, with a reason');
    } else if (IMMUTABLE.includes(path)) {
      v.add(`update_mask.paths[${index}]`, `${path} is immutable`);
    } else {
      v.add(`update_mask.paths[${index}]`, `unknown or non-updatable field (updatable: ${UPDATABLE.join(', ')})`);
    }
  });
  const changes: { -readonly [K in keyof PatientChanges]: PatientChanges[K] } = {};
  if (selected.has('enrollment_date')) {
    changes.enrollmentDate = v.date('patient.enrollment_date', patient.enrollmentDate, {
      required: true,
      min: EARLIEST_ENROLLMENT,
      max: todayUtc(),
    });
  }
  if (selected.has('treatment_arm')) {
    v.string('patient.treatment_arm', patient.treatmentArm, { max: 50 });
    changes.treatmentArm = patient.treatmentArm || null;
  }
  if (selected.has('demographics')) {
    validateDemographics(v, 'patient.demographics', patient.demographics);
    changes.demographics = patient.demographics ?? patientV1.Demographics.fromPartial({});
  }
  if (selected.has('medical_history')) {
    validateMedicalHistory(v, 'patient.medical_history', patient.medicalHistory);
    changes.medicalHistory = patient.medicalHistory ?? patientV1.MedicalHistory.fromPartial({});
  }
  return changes;
}

/**
 * UpdatePatient: the fields named by the mask, if the etag is current
 * (ABORTED otherwise), in an audited transaction carrying the reason; the
 * cache entry is rewritten after commit.
 */
export function updatePatientHandler(runtime: ServiceRuntime) {
  return async function updatePatient(
    request: patientV1.UpdatePatientRequest,
    context: HandlerContext,
  ): Promise<patientV1.UpdatePatientResponse> {
    const v = new FieldValidator();
    if (!request.patient) {
      v.add('patient', 'is required');
    }
    const patientId = request.patient?.patientId ?? '';
    v.uuid('patient.patient_id', patientId);
    const expectedVersion = versionOfEtag(request.patient?.etag ?? '');
    if (!expectedVersion) {
      v.add('patient.etag', request.patient?.etag ? 'is not an etag this service issued' : 'is required (from GetPatient)');
    }
    const changes = changesOf(v, request);
    v.string('reason', request.reason, { max: 500 });
    v.uuid('request_id', request.requestId, false);
    v.throwIfInvalid();

    // What this call's own attempt wrote and answered (a transaction retried by Slonik may run it more than once).
    let written: { answer: patientV1.UpdatePatientResponse; rowVersion: string } | undefined;
    const response = await runAuditedMutation(
      runtime,
      context,
      {
        request,
        requestType: patientV1.UpdatePatientRequest,
        reason: request.reason,
        responseCodec,
      },
      async (transaction) => {
        const row = await applyGuardedUpdate(transaction, {
          patientId: patientId.toLowerCase(),
          sites: accessibleSites(context.principal),
          expectedVersion: expectedVersion as string,
          changes,
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
