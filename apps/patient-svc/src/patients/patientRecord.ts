import { patientV1 } from '@clinical/contracts';
import { parseCivilDate } from '@clinical/server-kit';
import { z } from 'zod';

const { PatientStatus, Sex } = patientV1;

/** Status names as stored in patients.status. */
export const STATUS_NAMES = ['SCREENING', 'SCREEN_FAILED', 'ENROLLED', 'COMPLETED', 'WITHDRAWN'] as const;
export type StatusName = (typeof STATUS_NAMES)[number];

export const statusToName = new Map<patientV1.PatientStatus, StatusName>([
  [PatientStatus.PATIENT_STATUS_SCREENING, 'SCREENING'],
  [PatientStatus.PATIENT_STATUS_SCREEN_FAILED, 'SCREEN_FAILED'],
  [PatientStatus.PATIENT_STATUS_ENROLLED, 'ENROLLED'],
  [PatientStatus.PATIENT_STATUS_COMPLETED, 'COMPLETED'],
  [PatientStatus.PATIENT_STATUS_WITHDRAWN, 'WITHDRAWN'],
]);
const nameToStatus = new Map([...statusToName].map(([status, name]) => [name, status]));

const SEX_NAMES = new Map<patientV1.Sex, string>([
  [Sex.SEX_FEMALE, 'FEMALE'],
  [Sex.SEX_MALE, 'MALE'],
  [Sex.SEX_INTERSEX, 'INTERSEX'],
  [Sex.SEX_UNKNOWN, 'UNKNOWN'],
]);
const sexByName = new Map([...SEX_NAMES].map(([sex, name]) => [name, sex]));

/** A patients row as the service selects it. */
export const patientRow = z.object({
  patient_id: z.string().uuid(),
  subject_number: z.string(),
  site_id: z.string(),
  protocol_id: z.string(),
  enrollment_date: z.string(),
  treatment_arm: z.string().nullable(),
  demographics: z.record(z.unknown()),
  medical_history: z.record(z.unknown()),
  status: z.enum(STATUS_NAMES),
  created_at: z.date(),
  updated_at: z.date(),
  row_version: z.string(),
});
export type PatientRow = z.infer<typeof patientRow>;

/**
 * JSONB shape of `patients.demographics` (documented in the contract): only
 * the fields that are set, snake_case, sex by name.
 */
interface StoredDemographics {
  sex?: string;
  birth_year?: number;
  race?: string[];
  ethnicity?: string;
  height_cm?: number;
  weight_kg?: number;
}

/** JSONB shape of `patients.medical_history`; dates as 'YYYY-MM-DD'. */
interface StoredMedicalHistory {
  conditions?: { code: string; description?: string; onset_date?: string; ongoing?: boolean }[];
  medications?: { name: string; dose?: string; start_date?: string; end_date?: string }[];
  allergies?: string[];
}

const dateText = (date: patientV1.Patient['enrollmentDate']) =>
  date ? `${String(date.year).padStart(4, '0')}-${String(date.month).padStart(2, '0')}-${String(date.day).padStart(2, '0')}` : undefined;

/** Omits empty values so stored JSON holds only what was recorded. */
function compact<T extends object>(value: T): T {
  return Object.fromEntries(
    Object.entries(value).filter(
      ([, field]) => field !== undefined && field !== '' && field !== 0 && field !== false && !(Array.isArray(field) && field.length === 0),
    ),
  ) as T;
}

export function demographicsToJson(demographics: patientV1.Demographics | undefined): StoredDemographics {
  if (!demographics) {
    return {};
  }
  return compact({
    sex: SEX_NAMES.get(demographics.sex),
    birth_year: demographics.birthYear,
    race: demographics.race,
    ethnicity: demographics.ethnicity,
    height_cm: demographics.heightCm,
    weight_kg: demographics.weightKg,
  });
}

export function medicalHistoryToJson(history: patientV1.MedicalHistory | undefined): StoredMedicalHistory {
  if (!history) {
    return {};
  }
  return compact({
    conditions: history.conditions.map((condition) =>
      compact({
        code: condition.code,
        description: condition.description,
        onset_date: dateText(condition.onsetDate),
        ongoing: condition.ongoing,
      }),
    ),
    medications: history.medications.map((medication) =>
      compact({
        name: medication.name,
        dose: medication.dose,
        start_date: dateText(medication.startDate),
        end_date: dateText(medication.endDate),
      }),
    ),
    allergies: history.allergies,
  });
}

function demographicsFromJson(stored: StoredDemographics): patientV1.Demographics {
  return patientV1.Demographics.fromPartial({
    sex: (stored.sex && sexByName.get(stored.sex)) || Sex.SEX_UNSPECIFIED,
    birthYear: stored.birth_year ?? 0,
    race: stored.race ?? [],
    ethnicity: stored.ethnicity ?? '',
    heightCm: stored.height_cm ?? 0,
    weightKg: stored.weight_kg ?? 0,
  });
}

function medicalHistoryFromJson(stored: StoredMedicalHistory): patientV1.MedicalHistory {
  const optionalDate = (value: string | undefined) => (value ? parseCivilDate(value) : undefined);
  return patientV1.MedicalHistory.fromPartial({
    conditions: (stored.conditions ?? []).map((condition) => ({
      code: condition.code,
      description: condition.description ?? '',
      onsetDate: optionalDate(condition.onset_date),
      ongoing: condition.ongoing ?? false,
    })),
    medications: (stored.medications ?? []).map((medication) => ({
      name: medication.name,
      dose: medication.dose ?? '',
      startDate: optionalDate(medication.start_date),
      endDate: optionalDate(medication.end_date),
    })),
    allergies: stored.allergies ?? [],
  });
}

/** The API's etag of a row version: opaque to callers, compared as a string. */
export const etagOf = (rowVersion: string): string => `"${rowVersion}"`;

/** The contract's Patient of a patients row. */
export function toPatientMessage(row: PatientRow): patientV1.Patient {
  return {
    patientId: row.patient_id,
    subjectNumber: row.subject_number,
    siteId: row.site_id,
    protocolId: row.protocol_id,
    enrollmentDate: parseCivilDate(row.enrollment_date),
    treatmentArm: row.treatment_arm ?? '',
    demographics: demographicsFromJson(row.demographics as StoredDemographics),
    medicalHistory: medicalHistoryFromJson(row.medical_history as StoredMedicalHistory),
    status: nameToStatus.get(row.status) ?? PatientStatus.PATIENT_STATUS_UNSPECIFIED,
    createTime: row.created_at,
    updateTime: row.updated_at,
    etag: etagOf(row.row_version),
  };
}

/** The row version an etag stands for, or undefined when it is not one of ours. */
export function versionOfEtag(etag: string): string | undefined {
  return /^"(\d{1,18})"$/.exec(etag)?.[1];
}
