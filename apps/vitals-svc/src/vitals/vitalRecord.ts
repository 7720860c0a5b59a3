import type { vitalsV1 } from '@clinical/contracts';
import { COPY_NULL, copyText, rowSchema } from '@clinical/db';
import { parseCivilDate, withMapEntriesInKeyOrder } from '@clinical/server-kit';
import { z } from 'zod/v4';
import type { NormalizedReading } from './validateReading.js';

/** The columns of vital_signs the service selects, in this order. */
export const VITAL_COLUMNS = [
  'vital_id',
  'patient_id',
  'visit_date',
  'measurement_time',
  'systolic_bp',
  'diastolic_bp',
  'heart_rate',
  'temperature',
  'data_batch',
] as const;

/**
 * A vital_signs row as the service selects it (visit_date as text). Shapes
 * only: the column types already guarantee the formats (a uuid column holds
 * UUIDs), and a page parses up to 1,001 rows (zod 4, through rowSchema).
 */
export const vitalFields = z.object({
  vital_id: z.string(),
  patient_id: z.string(),
  visit_date: z.string().nullable(),
  measurement_time: z.date(),
  systolic_bp: z.number().int().nullable(),
  diastolic_bp: z.number().int().nullable(),
  heart_rate: z.number().int().nullable(),
  temperature: z.number().nullable(),
  data_batch: z.unknown().nullable(),
  recorded_at: z.date(),
});
export const vitalRow = rowSchema(vitalFields);
export type VitalRow = z.infer<typeof vitalFields>;

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/** The contract's VitalSigns of a stored row. data_batch written by other paths may be any JSON: only an object is a device_data. */
export function toVitalSigns(row: VitalRow): vitalsV1.VitalSigns {
  return {
    vitalId: row.vital_id,
    patientId: row.patient_id,
    visitDate: row.visit_date ? parseCivilDate(row.visit_date) : undefined,
    measurementTime: row.measurement_time,
    systolicBp: row.systolic_bp ?? undefined,
    diastolicBp: row.diastolic_bp ?? undefined,
    heartRate: row.heart_rate ?? undefined,
    temperatureCelsius: row.temperature ?? undefined,
    deviceData: isObject(row.data_batch) ? row.data_batch : undefined,
    createTime: row.recorded_at,
  };
}

/** The contract's VitalSigns of a reading just written with this id, at this transaction time. */
export function recordedVitalSigns(reading: NormalizedReading, vitalId: string, createTime: Date): vitalsV1.VitalSigns {
  return {
    vitalId,
    patientId: reading.patientId,
    visitDate: parseCivilDate(reading.visitDate),
    measurementTime: reading.measurementTime,
    systolicBp: reading.systolicBp ?? undefined,
    diastolicBp: reading.diastolicBp ?? undefined,
    heartRate: reading.heartRate ?? undefined,
    temperatureCelsius: reading.temperature ?? undefined,
    deviceData: reading.deviceData ?? undefined,
    createTime,
  };
}

const copyNumber = (value: number | null) => (value === null ? COPY_NULL : String(value));

/** Columns of a COPY into vital_signs, matching `readingCopyLine`. recorded_at takes its default (now()). */
export const COPY_COLUMNS = VITAL_COLUMNS;

/**
 * A reading in COPY text format without its vital_id: what identifies the
 * reading's content (hashed for request_id reuse checks), independent of the
 * id the server gives it. Prefix `${vitalId}\t` to make the COPY line.
 */
export function readingCopyFields(reading: NormalizedReading): string {
  return `${reading.patientId}\t${reading.visitDate}\t${reading.measurementIso}\t${copyNumber(reading.systolicBp)}\t${copyNumber(
    reading.diastolicBp,
  )}\t${copyNumber(reading.heartRate)}\t${reading.temperature === null ? COPY_NULL : reading.temperature.toFixed(1)}\t${
    reading.deviceDataJson === null ? COPY_NULL : copyText(reading.deviceDataJson)
  }\n`;
}

/**
 * What a request_id's reuse check hashes of a reading: its COPY fields (see
 * `readingCopyFields`, passed in as computed), with device_data's entries in
 * key order, so that a retried stream whose device_data reached the server
 * in another wire order is the same stream.
 */
export function readingRetryFields(reading: NormalizedReading, copyFields: string): string {
  return reading.deviceData === null
    ? copyFields
    : readingCopyFields({ ...reading, deviceDataJson: JSON.stringify(withMapEntriesInKeyOrder(reading.deviceData)) });
}
