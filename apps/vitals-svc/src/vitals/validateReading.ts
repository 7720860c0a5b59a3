import type { vitalsV1 } from '@clinical/contracts';
import { checkJsonDocument, formatCivilDate, todayUtc } from '@clinical/server-kit';
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

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A reading that passed validation, in the form it is stored. */
export interface NormalizedReading {
  /** Lower case. */
  readonly patientId: string;
  /** 'YYYY-MM-DD'. */
  readonly visitDate: string;
  readonly measurementTime: Date;
  /** measurement_time as ISO 8601 text (UTC, milliseconds). */
  readonly measurementIso: string;
  readonly systolicBp: number | null;
  readonly diastolicBp: number | null;
  readonly heartRate: number | null;
  /** Rounded to the tenth, as DECIMAL(4,1) stores it. */
  readonly temperature: number | null;
  readonly deviceData: Record<string, unknown> | null;
  /** device_data as JSON text, or null. */
  readonly deviceDataJson: string | null;
}

function checkMeasure(
  violations: ReadingViolations,
  at: string,
  value: number | undefined,
  range: { field: string; min: number; max: number },
): number | null {
  if (value === undefined) {
    return null;
  }
  if (!Number.isInteger(value) || value < range.min || value > range.max) {
    violations.add(`${at}.${range.field}`, `must be between ${range.min} and ${range.max}`);
    return null;
  }
  return value;
}

function checkDeviceData(
  violations: ReadingViolations,
  at: string,
  deviceData: Record<string, unknown> | undefined,
): { value: Record<string, unknown>; json: string } | null {
  if (deviceData === undefined) {
    return null;
  }
  const checked = checkJsonDocument(deviceData, { maxBytes: MAX_DEVICE_DATA_BYTES, maxDepth: MAX_DEVICE_DATA_DEPTH });
  if ('problem' in checked) {
    violations.add(`${at}.device_data`, checked.problem);
    return null;
  }
  return { value: deviceData, json: checked.json };
}

/**
 * Checks one reading against the contract and returns it as it will be
 * stored; violations go to `violations`, named under `at` (`reading`,
 * `readings[12]`), never echoing a value. `nowMs` is the server's clock.
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
  let valid = true;
  const invalid = (field: string, description: string) => {
    violations.add(`${at}.${field}`, description);
    valid = false;
  };

  if (reading.patientId === '') {
    invalid('patient_id', 'is required');
  } else if (!UUID.test(reading.patientId)) {
    invalid('patient_id', 'must be a UUID');
  }

  const time = reading.measurementTime;
  const timeMs = time ? time.getTime() : Number.NaN;
  if (!time) {
    invalid('measurement_time', 'is required');
  } else if (Number.isNaN(timeMs)) {
    invalid('measurement_time', 'is not a valid timestamp');
  } else if (timeMs < EARLIEST_MEASUREMENT_MS) {
    invalid('measurement_time', 'must not be before 1990-01-01T00:00:00Z');
  } else if (timeMs > nowMs + CLOCK_SKEW_MS) {
    invalid('measurement_time', 'must not be more than 5 minutes in the future');
  }

  let visitDate: string | undefined;
  if (reading.visitDate) {
    visitDate = formatCivilDate(reading.visitDate);
    if (!visitDate) {
      invalid('visit_date', 'must be a complete, valid calendar date');
    } else if (visitDate < EARLIEST_VISIT_DATE) {
      invalid('visit_date', `must not be before ${EARLIEST_VISIT_DATE}`);
    } else if (visitDate > todayUtc(new Date(nowMs + LATEST_VISIT_AHEAD_MS))) {
      // A site's calendar day may run ahead of UTC's, by a day at most.
      invalid('visit_date', 'must not be after tomorrow (UTC)');
    }
  }

  const systolicBp = checkMeasure(violations, at, reading.systolicBp, RANGES.systolicBp);
  const diastolicBp = checkMeasure(violations, at, reading.diastolicBp, RANGES.diastolicBp);
  const heartRate = checkMeasure(violations, at, reading.heartRate, RANGES.heartRate);
  let temperature: number | null = null;
  if (reading.temperatureCelsius !== undefined) {
    const rounded = Math.round(reading.temperatureCelsius * 10) / 10;
    const range = RANGES.temperatureCelsius;
    if (!Number.isFinite(rounded) || rounded < range.min || rounded > range.max) {
      invalid(range.field, 'must be between 25.0 and 45.0 once rounded to one decimal');
    } else {
      temperature = rounded;
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
    invalid('diastolic_bp', 'must be below systolic_bp');
  }
  if (
    reading.systolicBp === undefined &&
    reading.diastolicBp === undefined &&
    reading.heartRate === undefined &&
    reading.temperatureCelsius === undefined
  ) {
    violations.add(at, 'needs at least one of systolic_bp, diastolic_bp, heart_rate and temperature_celsius');
    valid = false;
  }

  const deviceData = checkDeviceData(violations, at, reading.deviceData);
  if (reading.deviceData !== undefined && deviceData === null) {
    valid = false;
  }

  if (!valid || !time) {
    return undefined;
  }
  const measurementIso = time.toISOString();
  return {
    patientId: reading.patientId.toLowerCase(),
    visitDate: visitDate ?? measurementIso.slice(0, 10),
    measurementTime: time,
    measurementIso,
    systolicBp,
    diastolicBp,
    heartRate,
    temperature,
    deviceData: deviceData?.value ?? null,
    deviceDataJson: deviceData?.json ?? null,
  };
}
