import { patientV1 } from '@clinical/contracts';
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

/*
 * Reading stored JSON. Rows written by plain SQL (which must keep working) may
 * hold JSON that is not of the documented shape: a fractional birth year, a
 * string where a list belongs, a date as "03/15/2020", an unknown sex name.
 * Such values would make the message unencodable (ts-proto throws on an
 * invalid int32) or throw outright, failing every read of the patient, so
 * what does not fit the contract is dropped, field by field, and the rest
 * is served.
 */

const INT32_MIN = -2_147_483_648;
const INT32_MAX = 2_147_483_647;

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const textOr = (value: unknown): string => (typeof value === 'string' ? value : '');
const int32Or = (value: unknown): number =>
  typeof value === 'number' && Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX ? value : 0;
const doubleOr = (value: unknown): number => (typeof value === 'number' && Number.isFinite(value) ? value : 0);
const listOf = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const textsOf = (value: unknown): string[] => listOf(value).filter((item): item is string => typeof item === 'string');

const daysIn = (year: number, month: number): number =>
  month === 2 ? (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;

/** A stored 'YYYY-MM-DD' that names a real day, or undefined. */
export function civilDateOf(value: unknown): patientV1.Patient['enrollmentDate'] {
  const match = typeof value === 'string' ? /^(\d{4,7})-(\d{2})-(\d{2})$/.exec(value) : null;
  if (!match) {
    return undefined;
  }
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) {
    return undefined;
  }
  return { year, month, day };
}

function demographicsFromJson(stored: Record<string, unknown>): patientV1.Demographics {
  return patientV1.Demographics.fromPartial({
    sex: (typeof stored.sex === 'string' && sexByName.get(stored.sex)) || Sex.SEX_UNSPECIFIED,
    birthYear: int32Or(stored.birth_year),
    race: textsOf(stored.race),
    ethnicity: textOr(stored.ethnicity),
    heightCm: doubleOr(stored.height_cm),
    weightKg: doubleOr(stored.weight_kg),
  });
}

function medicalHistoryFromJson(stored: Record<string, unknown>): patientV1.MedicalHistory {
  return patientV1.MedicalHistory.fromPartial({
    conditions: listOf(stored.conditions)
      .filter(isRecord)
      .map((condition) => ({
        code: textOr(condition.code),
        description: textOr(condition.description),
        onsetDate: civilDateOf(condition.onset_date),
        ongoing: condition.ongoing === true,
      })),
    medications: listOf(stored.medications)
      .filter(isRecord)
      .map((medication) => ({
        name: textOr(medication.name),
        dose: textOr(medication.dose),
        startDate: civilDateOf(medication.start_date),
        endDate: civilDateOf(medication.end_date),
      })),
    allergies: textsOf(stored.allergies),
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
    // A DATE column, so 'YYYY-MM-DD' unless plain SQL stored 'infinity' or a BC date.
    enrollmentDate: civilDateOf(row.enrollment_date),
    treatmentArm: row.treatment_arm ?? '',
    demographics: demographicsFromJson(row.demographics),
    medicalHistory: medicalHistoryFromJson(row.medical_history),
    status: nameToStatus.get(row.status) ?? PatientStatus.PATIENT_STATUS_UNSPECIFIED,
    createTime: row.created_at,
    updateTime: row.updated_at,
    etag: etagOf(row.row_version),
  };
}

/**
 * The row version an etag stands for, or undefined when it is not one of ours
 * (only the form etagOf writes: no sign, no leading zeros).
 */
export function versionOfEtag(etag: string): string | undefined {
  return /^"(0|[1-9]\d{0,17})"$/.exec(etag)?.[1];
}
