import { FailedPreconditionError, NotFoundError } from '@clinical/errors';
import { canAccessSite, type Principal } from '@clinical/server-kit';

/** Statuses in which a patient may still get readings. */
export const ACTIVE_STATUSES = ['SCREENING', 'ENROLLED'] as const;
const ACTIVE = new Set<string>(ACTIVE_STATUSES);

/** What the service may know of a patient (its role sees no other column). */
export interface PatientAccessRow {
  readonly patient_id: string;
  readonly site_id: string;
  readonly status: string;
}

/**
 * Checks that the caller may record readings for each of `patientIds` (in
 * order, so the first offending reading decides the error).
 * @throws NotFoundError for a patient that does not exist or is outside the caller's sites (indistinguishable).
 * @throws FailedPreconditionError for a patient that is no longer active.
 */
export function assertWritablePatients(principal: Principal, patientIds: Iterable<string>, rows: readonly PatientAccessRow[]): void {
  const byId = new Map(rows.map((row) => [row.patient_id, row]));
  for (const patientId of patientIds) {
    const row = byId.get(patientId);
    if (!row || !canAccessSite(principal, row.site_id)) {
      throw new NotFoundError('patient', patientId);
    }
    if (!ACTIVE.has(row.status)) {
      throw new FailedPreconditionError(
        `patient ${patientId} is not active: readings can be recorded only for SCREENING or ENROLLED patients`,
      );
    }
  }
}

/** The caller's sites as a SQL filter value: null means every site. */
export function siteFilter(principal: Principal): readonly string[] | null {
  return principal.sites === '*' ? null : principal.sites;
}
