import { vitalsV1 } from '@clinical/contracts';
import { recordedSpans, seededRandom } from '@clinical/testing';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import * as grpc from '@grpc/grpc-js';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendRawRequests } from '@clinical/server-kit/testing';
import { expectStatus, reading, startVitalsTestBed, type VitalsTestBed } from '../testing/vitalsTestKit.js';

let bed: VitalsTestBed;
let patientId: string;

beforeAll(async () => {
  // Over a hundred bulk calls from one caller: more than the default rate limit allows.
  bed = await startVitalsTestBed({ RATE_LIMIT_POINTS: '1000000' });
  patientId = await bed.patient();
});

afterAll(async () => {
  await bed?.stop();
});

const nested = (depth: number): Record<string, unknown> => (depth === 0 ? { leaf: 1 } : { next: nested(depth - 1) });
/** The UTC calendar date `days` from now. */
const civilDateIn = (days: number) => {
  const at = new Date(Date.now() + days * 86_400_000);
  return { year: at.getUTCFullYear(), month: at.getUTCMonth() + 1, day: at.getUTCDate() };
};

/** Each case: what is wrong with the reading, and the field (under the reading) a violation must name. */
const CASES: { name: string; change: Partial<vitalsV1.VitalSigns>; field: string }[] = [
  { name: 'no patient_id', change: { patientId: '' }, field: 'patient_id' },
  { name: 'patient_id not a UUID', change: { patientId: 'patient-42' }, field: 'patient_id' },
  { name: 'patient_id with SQL', change: { patientId: "'; DROP TABLE vital_signs; --" }, field: 'patient_id' },
  { name: 'no measurement_time', change: { measurementTime: undefined }, field: 'measurement_time' },
  { name: 'measurement_time before 1990', change: { measurementTime: new Date(Date.UTC(1989, 11, 31, 23, 59)) }, field: 'measurement_time' },
  { name: 'measurement_time 10 minutes ahead', change: { measurementTime: new Date(Date.now() + 10 * 60_000) }, field: 'measurement_time' },
  { name: 'measurement_time in year 9999', change: { measurementTime: new Date(Date.UTC(9999, 0, 1)) }, field: 'measurement_time' },
  { name: 'systolic 39', change: { systolicBp: 39, diastolicBp: 30 }, field: 'systolic_bp' },
  { name: 'systolic 301', change: { systolicBp: 301 }, field: 'systolic_bp' },
  { name: 'systolic negative', change: { systolicBp: -120 }, field: 'systolic_bp' },
  { name: 'systolic at int32 max', change: { systolicBp: 2_147_483_647 }, field: 'systolic_bp' },
  { name: 'diastolic 19', change: { diastolicBp: 19 }, field: 'diastolic_bp' },
  { name: 'diastolic 201', change: { diastolicBp: 201, systolicBp: 250 }, field: 'diastolic_bp' },
  { name: 'diastolic equal to systolic', change: { systolicBp: 120, diastolicBp: 120 }, field: 'diastolic_bp' },
  { name: 'diastolic above systolic', change: { systolicBp: 90, diastolicBp: 110 }, field: 'diastolic_bp' },
  { name: 'heart rate 19', change: { heartRate: 19 }, field: 'heart_rate' },
  { name: 'heart rate 301', change: { heartRate: 301 }, field: 'heart_rate' },
  { name: 'heart rate 0', change: { heartRate: 0 }, field: 'heart_rate' },
  { name: 'temperature 24.94', change: { temperatureCelsius: 24.94 }, field: 'temperature_celsius' },
  { name: 'temperature 45.05', change: { temperatureCelsius: 45.05 }, field: 'temperature_celsius' },
  { name: 'temperature in Fahrenheit', change: { temperatureCelsius: 98.6 }, field: 'temperature_celsius' },
  { name: 'temperature NaN', change: { temperatureCelsius: Number.NaN }, field: 'temperature_celsius' },
  { name: 'temperature infinite', change: { temperatureCelsius: Number.POSITIVE_INFINITY }, field: 'temperature_celsius' },
  { name: 'temperature 1e308', change: { temperatureCelsius: 1e308 }, field: 'temperature_celsius' },
  { name: 'temperature negative zero Kelvin', change: { temperatureCelsius: -273.15 }, field: 'temperature_celsius' },
  {
    name: 'no measure at all',
    change: { systolicBp: undefined, diastolicBp: undefined, heartRate: undefined, temperatureCelsius: undefined },
    field: '',
  },
  { name: 'visit_date without month', change: { visitDate: { year: 2024, month: 0, day: 3 } }, field: 'visit_date' },
  { name: 'visit_date 30 February', change: { visitDate: { year: 2024, month: 2, day: 30 } }, field: 'visit_date' },
  { name: 'visit_date before 1990', change: { visitDate: { year: 1989, month: 12, day: 31 } }, field: 'visit_date' },
  { name: 'visit_date negative year', change: { visitDate: { year: -5, month: 1, day: 1 } }, field: 'visit_date' },
  { name: 'visit_date in year 9999', change: { visitDate: { year: 9999, month: 12, day: 31 } }, field: 'visit_date' },
  { name: 'visit_date the day after tomorrow (UTC)', change: { visitDate: civilDateIn(2) }, field: 'visit_date' },
  { name: 'device_data with NUL in a value', change: { deviceData: { serial: 'A\u0000B' } }, field: 'device_data' },
  { name: 'device_data with NUL in a key', change: { deviceData: { 'se\u0000rial': 'AB' } }, field: 'device_data' },
  { name: 'device_data over 16 KiB', change: { deviceData: { blob: 'x'.repeat(17_000) } }, field: 'device_data' },
  { name: 'device_data nested 20 deep', change: { deviceData: nested(20) }, field: 'device_data' },
  { name: 'device_data with NaN', change: { deviceData: { gain: Number.NaN } }, field: 'device_data' },
  { name: 'device_data with infinity', change: { deviceData: { gain: [1, Number.NEGATIVE_INFINITY] } }, field: 'device_data' },
];

/** The field paths named in an INVALID_ARGUMENT's message ("field: description; ..."). */
const namedFields = (details: string) => details.split('; ').map((violation) => violation.slice(0, violation.indexOf(': ')));

describe('malformed readings are INVALID_ARGUMENT naming the field, and nothing is written', () => {
  it.each(CASES)('RecordVitals: $name', async ({ change, field }) => {
    const client = await bed.client();
    const error = await expectStatus(client.recordVitals({ reading: reading(patientId, 1, change) }), Status.INVALID_ARGUMENT);
    expect(namedFields(error.details)).toContain(field ? `reading.${field}` : 'reading');
    expect(await bed.countReadings(patientId)).toBe(0);
  });

  it.each(CASES)('BatchRecordVitals, reading 3 of 5: $name', async ({ change, field }) => {
    const client = await bed.client();
    const readings = Array.from({ length: 5 }, (_, index) => reading(patientId, index + 1, index === 3 ? change : {}));
    const error = await expectStatus(client.batchRecordVitals({ readings }), Status.INVALID_ARGUMENT);
    expect(namedFields(error.details)).toContain(field ? `readings[3].${field}` : 'readings[3]');
    expect(await bed.countReadings(patientId)).toBe(0);
  });

  it.each(CASES)('StreamVitals, reading 7 of the second message: $name', async ({ change, field }) => {
    const client = await bed.client();
    async function* messages() {
      yield { requestId: '', readings: Array.from({ length: 5 }, (_, index) => reading(patientId, index + 1)) };
      yield { requestId: '', readings: Array.from({ length: 10 }, (_, index) => reading(patientId, index + 1, index === 7 ? change : {})) };
    }
    const error = await expectStatus(client.streamVitals(messages()), Status.INVALID_ARGUMENT);
    expect(namedFields(error.details)).toContain(field ? `readings[12].${field}` : 'readings[12]');
    expect(await bed.countReadings(patientId)).toBe(0);
  });

  it('refuses device_data nested beyond what protobuf decoding allows, as a malformed request', async () => {
    const client = await bed.client();
    const error = await expectStatus(client.recordVitals({ reading: reading(patientId, 1, { deviceData: nested(60) }) }), Status.INVALID_ARGUMENT);
    expect(namedFields(error.details)).toEqual(['request']);
  });

  it('refuses a request_id that is not a UUID', async () => {
    const client = await bed.client();
    const error = await expectStatus(client.recordVitals({ reading: reading(patientId), requestId: 'retry-1' }), Status.INVALID_ARGUMENT);
    expect(namedFields(error.details)).toEqual(['request_id']);
  });
});

/** Calls a method with raw bytes, as a client in any language could. */
async function rawCall(method: string, bytes: Uint8Array, token: string): Promise<grpc.status> {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  const path = `/clinical.vitals.v1.VitalsService/${method}`;
  const [status] = await sendRawRequests(bed.service.address, { path, requestStream: false }, [bytes], metadata);
  return status!;
}

/** A Timestamp message with any seconds and nanos, which a Date cannot express. */
function timestampBytes(seconds: bigint, nanos: number): Uint8Array {
  return new BinaryWriter().uint32(8).int64(seconds).uint32(16).int32(nanos).finish();
}

function rawReading(timestamp: Uint8Array): Uint8Array {
  return new BinaryWriter().uint32(18).string(patientId).uint32(34).bytes(timestamp).uint32(56).int32(70).finish();
}

describe('bytes no client library would send', () => {
  it('answers undecodable messages and absurd timestamps with INVALID_ARGUMENT, never INTERNAL', async () => {
    const token = await bed.service.token({ roles: ['coordinator'], sites: ['SITE-A'] });
    const garbage = [Uint8Array.from([0xff, 0xff, 0xff]), Uint8Array.from([0x0a, 0x50, 0x01]), Uint8Array.from([0x08])];
    for (const method of ['RecordVitals', 'BatchRecordVitals', 'ListVitals', 'GetLatestVitals', 'SummarizeVitals']) {
      for (const bytes of garbage) {
        expect(grpc.status[await rawCall(method, bytes, token)], method).toBe('INVALID_ARGUMENT');
      }
    }
    for (const [seconds, nanos] of [
      [9_223_372_036_854_775_807n, 0],
      [-9_223_372_036_854_775_808n, 0],
      [1_700_000_000n, -1],
      [1_700_000_000n, 2_000_000_000],
    ] as const) {
      const request = new BinaryWriter().uint32(10).bytes(rawReading(timestampBytes(seconds, nanos))).finish();
      expect(grpc.status[await rawCall('RecordVitals', request, token)]).not.toMatch(/INTERNAL|UNKNOWN/);
    }
    expect(await bed.countReadings(patientId)).toBeLessThanOrEqual(2);
  });

  it('never answers INTERNAL or UNKNOWN to randomly corrupted requests', async () => {
    const token = await bed.service.token({ roles: ['coordinator'], sites: ['SITE-A'] });
    const valid = vitalsV1.BatchRecordVitalsRequest.encode({
      readings: [reading(patientId, 1, { deviceData: { model: 'BP-200', channels: [1, 2], ok: true } }), reading(patientId, 2)],
      requestId: '',
    }).finish();
    const random = seededRandom(42);
    const seen = new Set<string>();
    for (let attempt = 0; attempt < 300; attempt += 1) {
      const bytes = Uint8Array.from(valid);
      for (let flips = 1 + Math.floor(random() * 4); flips > 0; flips -= 1) {
        bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      }
      const method = attempt % 2 === 0 ? 'BatchRecordVitals' : 'RecordVitals';
      const code = grpc.status[await rawCall(method, bytes, token)];
      seen.add(code);
      expect(code, `${method} attempt ${attempt}`).not.toMatch(/INTERNAL|UNKNOWN/);
    }
    expect(seen).toContain('INVALID_ARGUMENT');
  });
});

describe('no PHI in spans', () => {
  it('keeps values and device data out of every span of a write and a read', async () => {
    const client = await bed.client();
    const startedAt = Date.now();
    await client.batchRecordVitals({ readings: [reading(patientId, 1, { heartRate: 187, deviceData: { owner: 'phi-marker-value' } })] });
    await client.listVitals({ patientId });
    const spans = recordedSpans().filter((span) => span.startTime[0] * 1_000 + span.startTime[1] / 1e6 >= startedAt - 5);
    const sql = spans.filter((span) => span.attributes['db.system'] === 'postgresql' || span.attributes['db.system.name'] === 'postgresql');
    expect(sql.length).toBeGreaterThan(0);
    const everything = JSON.stringify(spans.map((span) => ({ name: span.name, attributes: span.attributes, events: span.events })));
    expect(everything).not.toContain('phi-marker-value');
    // The reading's value must not appear as a value of its own (a port such as 41870, or an id such as 7dd187a0, may contain the digits).
    const values = spans.flatMap((span) => Object.values(span.attributes));
    expect(values.filter((value) => value === 187 || (typeof value === 'string' && /(^|[^0-9a-z])187([^0-9a-z]|$)/i.test(value)))).toEqual([]);
  });
});
