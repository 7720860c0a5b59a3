import type { StatusName } from './patientRecord.js';

/**
 * The patient status state machine, as the contract documents it:
 *   SCREENING -> ENROLLED | SCREEN_FAILED | WITHDRAWN
 *   ENROLLED  -> COMPLETED | WITHDRAWN
 * SCREEN_FAILED, COMPLETED and WITHDRAWN are final.
 */
const ALLOWED: Readonly<Record<StatusName, readonly StatusName[]>> = {
  SCREENING: ['ENROLLED', 'SCREEN_FAILED', 'WITHDRAWN'],
  ENROLLED: ['COMPLETED', 'WITHDRAWN'],
  SCREEN_FAILED: [],
  COMPLETED: [],
  WITHDRAWN: [],
};

export function canTransition(from: StatusName, to: StatusName): boolean {
  return ALLOWED[from].includes(to);
}

/** Statuses in which a patient is on study: readings and documents may still be added. */
export const ACTIVE_STATUSES: readonly StatusName[] = ['SCREENING', 'ENROLLED'];
