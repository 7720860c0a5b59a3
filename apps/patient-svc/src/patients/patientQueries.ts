import { sql, type CommonQueryMethods } from '@clinical/db';
import type { patientV1 } from '@clinical/contracts';
import { demographicsToJson, medicalHistoryToJson, patientRow, statusToName, type PatientRow } from './patientRecord.js';

const PATIENT_COLUMNS = sql.fragment`
  patient_id, subject_number, site_id, protocol_id, enrollment_date::text AS enrollment_date, treatment_arm,
  demographics, medical_history, status, created_at, updated_at, row_version
`;

/** Inserts a validated new patient; its status defaults to ENROLLED. */
export async function insertPatient(
  db: CommonQueryMethods,
  patient: patientV1.Patient,
  enrollmentDate: string,
): Promise<PatientRow> {
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

/** The patient with this id, or null. */
export async function selectPatient(db: CommonQueryMethods, patientId: string): Promise<PatientRow | null> {
  return db.maybeOne(sql.type(patientRow)`
    SELECT ${PATIENT_COLUMNS} FROM patients WHERE patient_id = ${patientId}
  `);
}
