import type { CommonQueryMethods } from '@clinical/db';
import { AbortedError, NotFoundError } from '@clinical/errors';
import { selectPatientVersion, updatePatient, type PatientChanges } from './patientQueries.js';
import type { PatientRow } from './patientRecord.js';

/**
 * Applies changes to a patient at `expectedVersion`.
 * @throws NotFoundError when the patient does not exist or is at a site the caller cannot see.
 * @throws AbortedError when it changed since the caller read it (stale etag).
 */
export async function applyGuardedUpdate(
  db: CommonQueryMethods,
  target: { patientId: string; sites: readonly string[] | undefined; expectedVersion: string; changes: PatientChanges },
): Promise<PatientRow> {
  const row = await updatePatient(db, target, target.changes);
  if (row) {
    return row;
  }
  if ((await selectPatientVersion(db, target.patientId, target.sites)) === null) {
    throw new NotFoundError('patient', target.patientId);
  }
  throw new AbortedError('the patient changed since it was read (stale etag); read it again and retry');
}
