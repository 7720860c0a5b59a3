import { patientV1 } from '@clinical/contracts';
import { FieldValidator, todayUtc } from '@clinical/server-kit';

const { PatientStatus, Sex } = patientV1;

const IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const IDENTIFIER_RULE = 'may hold letters, digits, ".", "_" and "-", starting with a letter or digit';
/** Earliest enrollment date accepted. */
export const EARLIEST_ENROLLMENT = '1990-01-01';
const EARLIEST_HISTORY_DATE = '1900-01-01';
const KNOWN_SEXES = [Sex.SEX_UNSPECIFIED, Sex.SEX_FEMALE, Sex.SEX_MALE, Sex.SEX_INTERSEX, Sex.SEX_UNKNOWN];

/** Statuses a patient may be created in; the default is ENROLLED. */
export const CREATABLE_STATUSES = [
  PatientStatus.PATIENT_STATUS_UNSPECIFIED,
  PatientStatus.PATIENT_STATUS_SCREENING,
  PatientStatus.PATIENT_STATUS_ENROLLED,
];

/** Checks demographics against the documented shape. */
export function validateDemographics(v: FieldValidator, field: string, demographics: patientV1.Demographics | undefined): void {
  if (!demographics) {
    return;
  }
  v.oneOf(`${field}.sex`, demographics.sex, KNOWN_SEXES);
  v.number(`${field}.birth_year`, demographics.birthYear, {
    min: 1900,
    max: new Date().getUTCFullYear(),
    zeroMeansUnset: true,
    integer: true,
  });
  if (v.count(`${field}.race`, demographics.race.length, { max: 10 })) {
    demographics.race.forEach((race, index) => v.string(`${field}.race[${index}]`, race, { required: true, max: 100 }));
  }
  v.string(`${field}.ethnicity`, demographics.ethnicity, { max: 100 });
  v.number(`${field}.height_cm`, demographics.heightCm, { min: 30, max: 280, zeroMeansUnset: true });
  v.number(`${field}.weight_kg`, demographics.weightKg, { min: 1, max: 500, zeroMeansUnset: true });
}

/** Checks a medical history against the documented shape. */
export function validateMedicalHistory(
  v: FieldValidator,
  field: string,
  history: patientV1.MedicalHistory | undefined,
): void {
  if (!history) {
    return;
  }
  const today = todayUtc();
  const dateRule = { min: EARLIEST_HISTORY_DATE, max: today };
  if (v.count(`${field}.conditions`, history.conditions.length, { max: 200 })) {
    history.conditions.forEach((condition, index) => {
      const at = `${field}.conditions[${index}]`;
      v.string(`${at}.code`, condition.code, { required: true, max: 32 });
      v.string(`${at}.description`, condition.description, { max: 500 });
      v.date(`${at}.onset_date`, condition.onsetDate, dateRule);
    });
  }
  if (v.count(`${field}.medications`, history.medications.length, { max: 200 })) {
    history.medications.forEach((medication, index) => {
      const at = `${field}.medications[${index}]`;
      v.string(`${at}.name`, medication.name, { required: true, max: 200 });
      v.string(`${at}.dose`, medication.dose, { max: 200 });
      const start = v.date(`${at}.start_date`, medication.startDate, dateRule);
      const end = v.date(`${at}.end_date`, medication.endDate, dateRule);
      if (start && end && end < start) {
        v.add(`${at}.end_date`, 'must not be before start_date');
      }
    });
  }
  if (v.count(`${field}.allergies`, history.allergies.length, { max: 100 })) {
    history.allergies.forEach((allergy, index) =>
      v.string(`${field}.allergies[${index}]`, allergy, { required: true, max: 200 }),
    );
  }
}

/**
 * Checks a patient to be created. Returns its enrollment date as
 * 'YYYY-MM-DD' when valid; violations accumulate in `v`.
 */
export function validateNewPatient(v: FieldValidator, field: string, patient: patientV1.Patient | undefined): string | undefined {
  if (!patient) {
    v.add(field, 'is required');
    return undefined;
  }
  const identifier = { required: true, max: 50, pattern: IDENTIFIER, patternDescription: IDENTIFIER_RULE };
  v.string(`${field}.subject_number`, patient.subjectNumber, identifier);
  v.string(`${field}.site_id`, patient.siteId, identifier);
  v.string(`${field}.protocol_id`, patient.protocolId, identifier);
  v.string(`${field}.treatment_arm`, patient.treatmentArm, { max: 50 });
  v.oneOf(`${field}.status`, patient.status, CREATABLE_STATUSES, 'a new patient must be SCREENING or ENROLLED');
  validateDemographics(v, `${field}.demographics`, patient.demographics);
  validateMedicalHistory(v, `${field}.medical_history`, patient.medicalHistory);
  return v.date(`${field}.enrollment_date`, patient.enrollmentDate, {
    required: true,
    min: EARLIEST_ENROLLMENT,
    max: todayUtc(),
  });
}
