import { sql, type CommonQueryMethods } from '@clinical/db';
import { AlreadyExistsError } from '@clinical/errors';
import type { patientV1 } from '@clinical/contracts';
import { z } from 'zod';
import {
  demographicsToJson,
  medicalHistoryToJson,
  patientRow,
  statusToName,
  type PatientRow,
  type StatusName,
} from './patientRecord.js';

const PATIENT_COLUMNS = sql.fragment`
  patient_id, subject_number, site_id, protocol_id, enrollment_date::text AS enrollment_date, treatment_arm,
  demographics, medical_history, status, created_at, updated_at, row_version
`;

/** `site_id` restricted to the caller's sites; undefined sites means every site. */
function siteScope(sites: readonly string[] | undefined) {
  return sites ? sql.fragment`site_id = ANY(${sql.array(sites, 'text')})` : sql.fragment`TRUE`;
}

/** A validated new patient and its enrollment date as 'YYYY-MM-DD'. */
export interface NewPatient {
  readonly patient: patientV1.Patient;
  readonly enrollmentDate: string;
}

/** Inserts one validated new patient; its status defaults to ENROLLED. */
export async function insertPatient(db: CommonQueryMethods, entry: NewPatient): Promise<PatientRow> {
  const { patient, enrollmentDate } = entry;
  return db.one(sql.type(patientRow)`
    INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, treatment_arm,
                          demographics, medical_history, status)
    VALUES (${patient.subjectNumber}, ${patient.siteId}, ${patient.protocolId}, ${enrollmentDate}::date,
            ${patient.treatmentArm || null}, ${sql.jsonb(demographicsToJson(patient.demographics) as never)},
            ${sql.jsonb(medicalHistoryToJson(patient.medicalHistory) as never)},
            ${statusToName.get(patient.status) ?? 'ENROLLED'})
    RETURNING ${PATIENT_COLUMNS}
  `);
}

/** The answer when a subject number is taken (unique across all sites), naming `field`. */
export function subjectNumberTaken(field: string, cause?: unknown): AlreadyExistsError {
  return new AlreadyExistsError(`${field}: a patient with this subject number already exists`, field, { cause });
}

/**
 * Inserts many patients in one statement. Subject numbers already taken are
 * skipped (ON CONFLICT DO NOTHING), so the caller can name them by comparing
 * what came back; it must then roll back.
 */
export async function insertPatients(db: CommonQueryMethods, entries: readonly NewPatient[]): Promise<readonly PatientRow[]> {
  return db.any(sql.type(patientRow)`
    INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, treatment_arm,
                          demographics, medical_history, status)
    SELECT * FROM ${sql.unnest(
      entries.map(({ patient, enrollmentDate }) => [
        patient.subjectNumber,
        patient.siteId,
        patient.protocolId,
        enrollmentDate,
        patient.treatmentArm || null,
        JSON.stringify(demographicsToJson(patient.demographics)),
        JSON.stringify(medicalHistoryToJson(patient.medicalHistory)),
        statusToName.get(patient.status) ?? 'ENROLLED',
      ]),
      ['text', 'text', 'text', 'date', 'text', 'jsonb', 'jsonb', 'text'],
    )}
    ON CONFLICT (subject_number) DO NOTHING
    RETURNING ${PATIENT_COLUMNS}
  `);
}

/** The patient with this id, or null. */
export async function selectPatient(db: CommonQueryMethods, patientId: string): Promise<PatientRow | null> {
  return db.maybeOne(sql.type(patientRow)`
    SELECT ${PATIENT_COLUMNS} FROM patients WHERE patient_id = ${patientId}
  `);
}

/** The current row version of a patient the caller may see, or null (missing or another site's). */
export async function selectPatientVersion(
  db: CommonQueryMethods,
  patientId: string,
  sites: readonly string[] | undefined,
): Promise<string | null> {
  return db.maybeOneFirst(sql.type(z.object({ row_version: z.string() }))`
    SELECT row_version FROM patients WHERE patient_id = ${patientId} AND ${siteScope(sites)}
  `);
}

export interface PatientListFilters {
  readonly siteId?: string;
  readonly protocolId?: string;
  readonly status?: StatusName;
  /** Inclusive 'YYYY-MM-DD' bounds. */
  readonly enrolledOnOrAfter?: string;
  readonly enrolledOnOrBefore?: string;
}

/** Where a page starts: after this (enrollment_date, patient_id) in descending order. */
export interface PatientListCursor {
  readonly enrollmentDate: string;
  readonly patientId: string;
}

/**
 * A page of patients at the caller's sites, newest enrollment first, walking
 * the (site_id, enrollment_date DESC, patient_id DESC) index from the cursor:
 * rows inserted meanwhile land before or after it, never shifting a page.
 */
export async function listPatients(
  db: CommonQueryMethods,
  query: { filters: PatientListFilters; sites: readonly string[] | undefined; after?: PatientListCursor; limit: number },
): Promise<readonly PatientRow[]> {
  const { filters, after } = query;
  const conditions = [
    siteScope(query.sites),
    ...(filters.siteId ? [sql.fragment`site_id = ${filters.siteId}`] : []),
    ...(filters.protocolId ? [sql.fragment`protocol_id = ${filters.protocolId}`] : []),
    ...(filters.status ? [sql.fragment`status = ${filters.status}`] : []),
    ...(filters.enrolledOnOrAfter ? [sql.fragment`enrollment_date >= ${filters.enrolledOnOrAfter}::date`] : []),
    ...(filters.enrolledOnOrBefore ? [sql.fragment`enrollment_date <= ${filters.enrolledOnOrBefore}::date`] : []),
    ...(after ? [sql.fragment`(enrollment_date, patient_id) < (${after.enrollmentDate}::date, ${after.patientId}::uuid)`] : []),
  ];
  return db.any(sql.type(patientRow)`
    SELECT ${PATIENT_COLUMNS} FROM patients
     WHERE ${sql.join(conditions, sql.fragment` AND `)}
     ORDER BY enrollment_date DESC, patient_id DESC
     LIMIT ${query.limit}
  `);
}

/** New values of the updatable fields; undefined leaves a field as it is. */
export interface PatientChanges {
  readonly enrollmentDate?: string;
  readonly treatmentArm?: string | null;
  readonly demographics?: patientV1.Demographics;
  readonly medicalHistory?: patientV1.MedicalHistory;
  readonly status?: StatusName;
}

/**
 * Applies `changes` if the patient is at one of the caller's sites and still
 * at `expectedVersion`; null otherwise (the caller tells missing from stale).
 */
export async function updatePatient(
  db: CommonQueryMethods,
  target: { patientId: string; sites: readonly string[] | undefined; expectedVersion: string },
  changes: PatientChanges,
): Promise<PatientRow | null> {
  const assignments = [
    ...(changes.enrollmentDate !== undefined ? [sql.fragment`enrollment_date = ${changes.enrollmentDate}::date`] : []),
    ...(changes.treatmentArm !== undefined ? [sql.fragment`treatment_arm = ${changes.treatmentArm}`] : []),
    ...(changes.demographics !== undefined
      ? [sql.fragment`demographics = ${sql.jsonb(demographicsToJson(changes.demographics) as never)}`]
      : []),
    ...(changes.medicalHistory !== undefined
      ? [sql.fragment`medical_history = ${sql.jsonb(medicalHistoryToJson(changes.medicalHistory) as never)}`]
      : []),
    ...(changes.status !== undefined ? [sql.fragment`status = ${changes.status}`] : []),
  ];
  return db.maybeOne(sql.type(patientRow)`
    UPDATE patients SET ${sql.join(assignments, sql.fragment`, `)}
     WHERE patient_id = ${target.patientId} AND ${siteScope(target.sites)} AND row_version = ${target.expectedVersion}
    RETURNING ${PATIENT_COLUMNS}
  `);
}
