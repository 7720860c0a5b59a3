import type { vitalsV1 } from '@clinical/contracts';
import { checkJsonDocument, formatCivilDate, todayUtc, type CivilDate } from '@clinical/server-kit';
import type { ReadingViolations } from './readingViolations.js';

/** Ranges of the contract (vitals.proto), inclusive. The table's CHECK constraints hold the same bounds. */
export const RANGES = {
  systolicBp: { field: 'systolic_bp', min: 40, max: 300 },
  diastolicBp: { field: 'diastolic_bp', min: 20, max: 200 },
  heartRate: { field: 'heart_rate', min: 20, max: 300 },
  temperatureCelsius: { field: 'temperature_celsius', min: 25, max: 45 },
} as const;

/** Most readings in one BatchRecordVitals call or one StreamVitals message. */
export const MAX_READINGS_PER_MESSAGE = 5_000;
/** How far measurement_time may be ahead of the server's clock. */
export const CLOCK_SKEW_MS = 5 * 60_000;
/** How far past the server's UTC date a visit_date may be. */
const LATEST_VISIT_AHEAD_MS = 86_400_000;
/** Earliest measurement_time and visit_date accepted. */
export const EARLIEST_MEASUREMENT_MS = Date.UTC(1990, 0, 1);
export const EARLIEST_VISIT_DATE = '1990-01-01';
/** Largest device_data, serialised as JSON (UTF-8 bytes). */
export const MAX_DEVICE_DATA_BYTES = 16 * 1024;
/** Deepest nesting of device_data objects and lists. */
export const MAX_DEVICE_DATA_DEPTH = 16;

/**
 * A reading's fields as decoded, before any check: what the rules look at.
 * The stream fills one such object with each reading in turn, normalizeReading
 * one per VitalSigns message. The two fractional numbers are always numbers,
 * with a flag for whether they were sent, so that a reused object updates
 * them in place instead of allocating a number per reading.
 */
export interface ReadingFields {
  patientId: string;
  measurementSent: boolean;
  /** measurement_time in milliseconds since 1970 when sent; NaN when it is not an instant. */
  measurementMs: number;
  visitDate: CivilDate | undefined;
  systolicBp: number | undefined;
  diastolicBp: number | undefined;
  heartRate: number | undefined;
  temperatureSent: boolean;
  temperatureCelsius: number;
  deviceData: Record<string, unknown> | undefined;
  /**
   * device_data already checked, as its JSON text: the stream's decoder
   * writes the JSON of a plain document itself (see deviceDataJson), and
   * hands anything else over as `deviceData`.
   */
  deviceDataJson: string | undefined;
}

/** A ReadingFields of a reading with nothing sent, for the stream to fill. */
export function emptyReadingFields(): ReadingFields {
  return {
    patientId: '',
    measurementSent: false,
    measurementMs: 0,
    visitDate: undefined,
    systolicBp: undefined,
    diastolicBp: undefined,
    heartRate: undefined,
    temperatureSent: false,
    temperatureCelsius: 0,
    deviceData: undefined,
    deviceDataJson: undefined,
  };
}

/** A reading that passed validation, as it is stored: what a bulk row is written from. */
export interface CheckedReading {
  /** Lower case. */
  patientId: string;
  /** measurement_time in milliseconds since 1970. */
  measurementMs: number;
  /** visit_date (default: the UTC date of measurement_time) as days since 1970-01-01. */
  visitEpochDay: number;
  systolicBp: number | null;
  diastolicBp: number | null;
  heartRate: number | null;
  /** The temperature in tenths of a degree (DECIMAL(4,1) stores it to the tenth). */
  temperatureTenths: number | null;
  /** device_data as JSON text, or null. */
  deviceDataJson: string | null;
}

/** A checked reading with the forms of its values the SQL and the responses use. */
export interface NormalizedReading extends Readonly<CheckedReading> {
  /** Rounded to the tenth. */
  readonly temperature: number | null;
  readonly deviceData: Record<string, unknown> | null;
  /** 'YYYY-MM-DD'. */
  readonly visitDate: string;
  readonly measurementTime: Date;
  /** measurement_time as ISO 8601 text (UTC, milliseconds). */
  readonly measurementIso: string;
}

/** An empty CheckedReading, for checkReading to fill. */
export function emptyCheckedReading(): CheckedReading {
  return {
    patientId: '',
    measurementMs: 0,
    visitEpochDay: 0,
    systolicBp: null,
    diastolicBp: null,
    heartRate: null,
    temperatureTenths: null,
    deviceDataJson: null,
  };
}

/** The field path of the reading at `index` (`reading`, `readings[12]`), made only when a violation names it. */
export type ReadingPath = (index: number) => string;

function checkMeasure(
  violations: ReadingViolations,
  at: ReadingPath,
  index: number,
  value: number | undefined,
  range: { field: string; min: number; max: number },
): number | null {
  if (value === undefined) {
    return null;
  }
  if (!Number.isInteger(value) || value < range.min || value > range.max) {
    violations.add(`${at(index)}.${range.field}`, `must be between ${range.min} and ${range.max}`);
    return null;
  }
  return value;
}

function checkDeviceData(
  violations: ReadingViolations,
  at: ReadingPath,
  index: number,
  deviceData: Record<string, unknown> | undefined,
): string | null {
  if (deviceData === undefined) {
    return null;
  }
  const checked = checkJsonDocument(deviceData, { maxBytes: MAX_DEVICE_DATA_BYTES, maxDepth: MAX_DEVICE_DATA_DEPTH });
  if ('problem' in checked) {
    violations.add(`${at(index)}.device_data`, checked.problem);
    return null;
  }
  return checked.json;
}

/** Adds the violation of `field` of the reading at `index`; returns false (the reading is invalid). */
function violation(violations: ReadingViolations, at: ReadingPath, index: number, field: string, description: string): false {
  violations.add(`${at(index)}.${field}`, description);
  return false;
}

/** Patient ids lately found to be UUIDs, with their lower-case form; at most KNOWN_IDS_MAX, then forgotten. */
const knownIds = new Map<string, string>();
const KNOWN_IDS_MAX = 4_096;

/**
 * The lower-case form of `text` if it is a UUID, else undefined. A stream
 * names each of its patients thousands of times: each is checked once.
 */
function canonicalUuid(text: string): string | undefined {
  const known = knownIds.get(text);
  if (known !== undefined || !isUuid(text)) {
    return known;
  }
  if (knownIds.size >= KNOWN_IDS_MAX) {
    knownIds.clear();
  }
  const canonical = text.toLowerCase();
  knownIds.set(text, canonical);
  return canonical;
}

/** Whether `text` is a UUID: 36 characters, hex digits with dashes at 8, 13, 18 and 23 (any case). */
function isUuid(text: string): boolean {
  if (text.length !== 36) {
    return false;
  }
  for (let index = 0; index < 36; index += 1) {
    const code = text.charCodeAt(index);
    if (index === 8 || index === 13 || index === 18 || index === 23) {
      if (code !== 0x2d) {
        return false;
      }
    } else if (!((code >= 0x30 && code <= 0x39) || (code >= 0x61 && code <= 0x66) || (code >= 0x41 && code <= 0x46))) {
      return false;
    }
  }
  return true;
}

/**
 * Checks one reading against the contract; when it passes, writes it as it
 * will be stored into `out` and returns true. Violations go to `violations`,
 * named under `at(index)` (`reading`, `readings[12]`), never echoing a value.
 * `nowMs` is the server's clock. Allocates nothing for a valid reading
 * without device_data (the stream checks a million a minute).
 */
export function checkReading(
  violations: ReadingViolations,
  at: ReadingPath,
  index: number,
  reading: ReadingFields,
  nowMs: number,
  out: CheckedReading,
): boolean {
  let valid = true;

  const patientId = reading.patientId === '' ? undefined : canonicalUuid(reading.patientId);
  if (reading.patientId === '') {
    valid = violation(violations, at, index, 'patient_id', 'is required');
  } else if (patientId === undefined) {
    valid = violation(violations, at, index, 'patient_id', 'must be a UUID');
  }

  const timeMs = reading.measurementMs;
  if (!reading.measurementSent) {
    valid = violation(violations, at, index, 'measurement_time', 'is required');
  } else if (Number.isNaN(timeMs)) {
    valid = violation(violations, at, index, 'measurement_time', 'is not a valid timestamp');
  } else if (timeMs < EARLIEST_MEASUREMENT_MS) {
    valid = violation(violations, at, index, 'measurement_time', 'must not be before 1990-01-01T00:00:00Z');
  } else if (timeMs > nowMs + CLOCK_SKEW_MS) {
    valid = violation(violations, at, index, 'measurement_time', 'must not be more than 5 minutes in the future');
  }

  let visitDate: string | undefined;
  if (reading.visitDate) {
    visitDate = formatCivilDate(reading.visitDate);
    if (!visitDate) {
      valid = violation(violations, at, index, 'visit_date', 'must be a complete, valid calendar date');
    } else if (visitDate < EARLIEST_VISIT_DATE) {
      valid = violation(violations, at, index, 'visit_date', `must not be before ${EARLIEST_VISIT_DATE}`);
    } else if (visitDate > todayUtc(new Date(nowMs + LATEST_VISIT_AHEAD_MS))) {
      // A site's calendar day may run ahead of UTC's, by a day at most.
      valid = violation(violations, at, index, 'visit_date', 'must not be after tomorrow (UTC)');
    }
  }

  const systolicBp = checkMeasure(violations, at, index, reading.systolicBp, RANGES.systolicBp);
  const diastolicBp = checkMeasure(violations, at, index, reading.diastolicBp, RANGES.diastolicBp);
  const heartRate = checkMeasure(violations, at, index, reading.heartRate, RANGES.heartRate);
  let temperatureTenths: number | null = null;
  if (reading.temperatureSent) {
    const tenths = Math.round(reading.temperatureCelsius * 10);
    const range = RANGES.temperatureCelsius;
    if (!Number.isFinite(tenths) || tenths < range.min * 10 || tenths > range.max * 10) {
      valid = violation(violations, at, index, range.field, 'must be between 25.0 and 45.0 once rounded to one decimal');
    } else {
      temperatureTenths = tenths;
    }
  }
  if (
    (reading.systolicBp !== undefined && systolicBp === null) ||
    (reading.diastolicBp !== undefined && diastolicBp === null) ||
    (reading.heartRate !== undefined && heartRate === null)
  ) {
    valid = false;
  }
  if (systolicBp !== null && diastolicBp !== null && diastolicBp >= systolicBp) {
    valid = violation(violations, at, index, 'diastolic_bp', 'must be below systolic_bp');
  }
  if (
    reading.systolicBp === undefined &&
    reading.diastolicBp === undefined &&
    reading.heartRate === undefined &&
    !reading.temperatureSent
  ) {
    violations.add(at(index), 'needs at least one of systolic_bp, diastolic_bp, heart_rate and temperature_celsius');
    valid = false;
  }

  const deviceDataJson = reading.deviceDataJson ?? checkDeviceData(violations, at, index, reading.deviceData);
  if (reading.deviceData !== undefined && deviceDataJson === null) {
    valid = false;
  }

  if (!valid || patientId === undefined) {
    return false;
  }
  out.patientId = patientId;
  out.measurementMs = timeMs;
  out.visitEpochDay = visitDate ? Date.parse(visitDate) / 86_400_000 : Math.floor(timeMs / 86_400_000);
  out.systolicBp = systolicBp;
  out.diastolicBp = diastolicBp;
  out.heartRate = heartRate;
  out.temperatureTenths = temperatureTenths;
  out.deviceDataJson = deviceDataJson;
  return true;
}

/** Fills `fields` (reused by the caller, or new) with a reading the generated decoder decoded, and returns it. */
export function readingFieldsOf(reading: vitalsV1.VitalSigns, fields: ReadingFields): ReadingFields {
  fields.patientId = reading.patientId;
  fields.measurementSent = reading.measurementTime !== undefined;
  fields.measurementMs = reading.measurementTime?.getTime() ?? 0;
  fields.visitDate = reading.visitDate;
  fields.systolicBp = reading.systolicBp;
  fields.diastolicBp = reading.diastolicBp;
  fields.heartRate = reading.heartRate;
  fields.temperatureSent = reading.temperatureCelsius !== undefined;
  fields.temperatureCelsius = reading.temperatureCelsius ?? 0;
  fields.deviceData = reading.deviceData;
  fields.deviceDataJson = undefined;
  return fields;
}

/**
 * Checks one reading of a request (see checkReading) and returns it as it
 * will be stored, or undefined when it is missing or invalid.
 */
export function normalizeReading(
  violations: ReadingViolations,
  at: string,
  reading: vitalsV1.VitalSigns | undefined,
  nowMs: number,
): NormalizedReading | undefined {
  if (!reading) {
    violations.add(at, 'is required');
    return undefined;
  }
  const checked = emptyCheckedReading();
  const fields = readingFieldsOf(reading, {} as ReadingFields);
  if (!checkReading(violations, () => at, 0, fields, nowMs, checked)) {
    return undefined;
  }
  const measurementTime = new Date(checked.measurementMs);
  const measurementIso = measurementTime.toISOString();
  return {
    ...checked,
    temperature: checked.temperatureTenths === null ? null : checked.temperatureTenths / 10,
    deviceData: reading.deviceData ?? null,
    visitDate: new Date(checked.visitEpochDay * 86_400_000).toISOString().slice(0, 10),
    measurementTime,
    measurementIso,
  };
}
