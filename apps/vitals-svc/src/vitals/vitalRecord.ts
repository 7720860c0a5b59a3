import type { vitalsV1 } from '@clinical/contracts';
import { COPY_NULL, copyText, rowSchema, type BinaryRowWriter } from '@clinical/db';
import { parseCivilDate, withMapEntriesInKeyOrder } from '@clinical/server-kit';
import { z } from 'zod/v4';
import type { CheckedReading, NormalizedReading } from './validateReading.js';

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

/** The columns of a bulk row (see `writeReadingRow`), in order. recorded_at takes its default: the transaction's time. */
export const BULK_ROW_COLUMNS = VITAL_COLUMNS;

/**
 * Writes `reading` with `vitalId` (16 bytes) as one row of BULK_ROW_COLUMNS
 * in binary COPY format, the patient id given as its 16 bytes (the caller
 * parses each patient's id once).
 */
export function writeReadingRow(writer: BinaryRowWriter, reading: CheckedReading, vitalId: Uint8Array, patientId: Uint8Array): void {
  writer.row(BULK_ROW_COLUMNS.length).uuidBytes(vitalId).uuidBytes(patientId).date(reading.visitEpochDay).timestamptz(reading.measurementMs);
  writeOptionalInt(writer, reading.systolicBp);
  writeOptionalInt(writer, reading.diastolicBp);
  writeOptionalInt(writer, reading.heartRate);
  if (reading.temperatureTenths === null) {
    writer.null();
  } else {
    writer.numeric(reading.temperatureTenths, 1);
  }
  if (reading.deviceDataJson === null) {
    writer.null();
  } else {
    writer.jsonb(reading.deviceDataJson);
  }
}

function writeOptionalInt(writer: BinaryRowWriter, value: number | null): void {
  if (value === null) {
    writer.null();
  } else {
    writer.int4(value);
  }
}

const copyNumber = (value: number | null) => (value === null ? COPY_NULL : String(value));

/**
 * What a request_id's reuse check hashes of a reading: its content without
 * any id the server gives it, as COPY text fields, with device_data's entries
 * in key order, so that a retried stream whose device_data reached the server
 * in another wire order is the same stream. (The text the service once wrote
 * with COPY: a stream's hash stays what it was.)
 */
export function readingRetryText(reading: CheckedReading): string {
  const deviceDataJson =
    reading.deviceDataJson === null ? null : JSON.stringify(withMapEntriesInKeyOrder(JSON.parse(reading.deviceDataJson) as unknown));
  return [
    reading.patientId,
    new Date(reading.visitEpochDay * 86_400_000).toISOString().slice(0, 10),
    new Date(reading.measurementMs).toISOString(),
    copyNumber(reading.systolicBp),
    copyNumber(reading.diastolicBp),
    copyNumber(reading.heartRate),
    reading.temperatureTenths === null ? COPY_NULL : (reading.temperatureTenths / 10).toFixed(1),
    deviceDataJson === null ? COPY_NULL : copyText(deviceDataJson),
  ].join('\t') + '\n';
}
