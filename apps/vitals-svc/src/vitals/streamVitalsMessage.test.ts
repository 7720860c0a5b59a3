import { vitalsV1 } from '@clinical/contracts';
import { InvalidArgumentError } from '@clinical/errors';
import { seededRandom } from '@clinical/testing';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import { ReadingViolations } from './readingViolations.js';
import { decodeStreamVitalsMessage, StreamVitalsMessage } from './streamVitalsMessage.js';
import { checkReading, emptyCheckedReading, emptyReadingFields, normalizeReading } from './validateReading.js';

// The stream decodes its messages itself (columns, device data straight to JSON) instead of with
// the generated decoder: every reading must come out exactly as the generated decoder and
// normalizeReading make it, violations included.

const NOW_MS = Date.UTC(2026, 11, 1, 12);
const PATIENT = '5e0f6c1a-8b3d-4d7e-9f21-0a1b2c3d4e5f';

/** What the checks make of a reading: its violations, and the values a row is written from. */
interface Outcome {
  readonly violations: readonly { field: string; description: string }[];
  readonly row?: Record<string, unknown>;
}

function violationsOf(violations: ReadingViolations): Outcome['violations'] {
  try {
    violations.throwIfAny();
    return [];
  } catch (error) {
    return (error as InvalidArgumentError).violations;
  }
}

/** Each reading of `bytes` decoded and checked the stream's way. */
function streamOutcomes(bytes: Uint8Array): Outcome[] {
  const message = decodeStreamVitalsMessage(bytes);
  const fields = emptyReadingFields();
  return Array.from({ length: message.readings.length }, (_, index) => {
    const violations = new ReadingViolations();
    const checked = emptyCheckedReading();
    message.readings.read(index, fields);
    const valid = checkReading(violations, (at) => `readings[${at}]`, index, fields, NOW_MS, checked);
    return { violations: violationsOf(violations), ...(valid ? { row: { ...checked } } : {}) };
  });
}

/** Each reading of `bytes` decoded by the generated decoder and checked by normalizeReading. */
function referenceOutcomes(bytes: Uint8Array): Outcome[] {
  return vitalsV1.StreamVitalsRequest.decode(bytes).readings.map((reading, index) => {
    const violations = new ReadingViolations();
    const normalized = normalizeReading(violations, `readings[${index}]`, reading, NOW_MS);
    if (!normalized) {
      return { violations: violationsOf(violations) };
    }
    const { patientId, measurementMs, visitEpochDay, systolicBp, diastolicBp, heartRate, temperatureTenths, deviceDataJson } = normalized;
    return {
      violations: violationsOf(violations),
      row: { patientId, measurementMs, visitEpochDay, systolicBp, diastolicBp, heartRate, temperatureTenths, deviceDataJson },
    };
  });
}

const encode = (readings: Partial<vitalsV1.VitalSigns>[], requestId = '') =>
  vitalsV1.StreamVitalsRequest.encode({ requestId, readings: readings.map((reading) => vitalsV1.VitalSigns.fromPartial(reading)) }).finish();

const nested = (depth: number): Record<string, unknown> => (depth === 0 ? { leaf: 1 } : { next: nested(depth - 1) });

/** A random JSON document of the kinds device data holds, sometimes one the rules refuse. */
function randomDocument(random: () => number, depth = 1): Record<string, unknown> {
  const keys = ['model', 'firmware', 'channel', 'ok', 'gain', 'serial', 'é-key', 'quote"d', 'back\\slash', 'tab\tkey', '0', '17', 'z', 'a'];
  const document: Record<string, unknown> = {};
  for (let count = Math.floor(random() * 5); count > 0; count -= 1) {
    document[keys[Math.floor(random() * keys.length)]!] = randomValue(random, depth + 1);
  }
  return document;
}

function randomValue(random: () => number, depth: number): unknown {
  const pick = random();
  if (pick < 0.15) {
    return Math.round(random() * 1_000) - 500;
  }
  if (pick < 0.25) {
    return [random() * 1e-7, 1e21, -0, 0.1 + 0.2, Number.NaN, Number.POSITIVE_INFINITY][Math.floor(random() * 6)];
  }
  if (pick < 0.45) {
    return ['BP-200', '', 'naïve ☃ 𝄞', 'line\nbreak', 'nul\u0000byte', '"quoted"', '\u0001\u001f'][Math.floor(random() * 7)];
  }
  if (pick < 0.55) {
    return random() < 0.5;
  }
  if (pick < 0.6) {
    return null;
  }
  if (pick < 0.8 && depth < 20) {
    return Array.from({ length: Math.floor(random() * 4) }, () => randomValue(random, depth + 1));
  }
  return depth < 20 ? randomDocument(random, depth) : 'deep';
}

/** A random reading: mostly valid, each field sometimes missing or out of its range. */
function randomReading(random: () => number): Partial<vitalsV1.VitalSigns> {
  const maybe = <T>(value: T, chance = 0.85): T | undefined => (random() < chance ? value : undefined);
  const wild = (valid: number, spread: number) => (random() < 0.9 ? valid : Math.round((random() - 0.3) * spread));
  return {
    patientId: [PATIENT, PATIENT.toUpperCase(), '', 'patient-42', `${PATIENT}x`][random() < 0.9 ? 0 : Math.floor(random() * 5)],
    measurementTime: maybe(new Date(random() < 0.9 ? NOW_MS - Math.floor(random() * 1e10) : NOW_MS + (random() - 0.5) * 1e13), 0.95),
    visitDate: random() < 0.2 ? { year: 1985 + Math.floor(random() * 45), month: Math.floor(random() * 14), day: Math.floor(random() * 33) } : undefined,
    systolicBp: maybe(wild(120, 700)),
    diastolicBp: maybe(wild(80, 400)),
    heartRate: maybe(wild(70, 700)),
    temperatureCelsius: maybe(random() < 0.9 ? 35 + random() * 5 : (random() - 0.2) * 100),
    deviceData: random() < 0.3 ? randomDocument(random) : undefined,
  };
}

describe('decodeStreamVitalsMessage', () => {
  it('reads every reading as the generated decoder and normalizeReading do, violations included', () => {
    const random = seededRandom(7);
    for (let message = 0; message < 40; message += 1) {
      const bytes = encode(Array.from({ length: 250 }, () => randomReading(random)));
      expect(streamOutcomes(bytes), `message ${message}`).toEqual(referenceOutcomes(bytes));
    }
  });

  it('writes device data as JSON.stringify writes it, and leaves what the rules refuse to them', () => {
    const documents: Record<string, unknown>[] = [
      {},
      { model: 'BP-200', firmware: '1.4.2', channel: 3, ok: true, none: null, list: [1, 'two', [3], {}] },
      { 'quote"d': 'back\\slash', tab: 'a\tb', ctl: '\u0001', unicode: 'naïve ☃ 𝄞' },
      { numbers: [1e21, 1e-7, -0, 0.30000000000000004, -12.5, 2 ** 53] },
      { 2: 'b', 1: 'a', z: 0 },
      nested(14),
      nested(15),
      nested(16),
      { nul: 'a\u0000b' },
      { 'ke\u0000y': 1 },
      { gain: Number.NaN },
      { gain: [Number.NEGATIVE_INFINITY] },
      { blob: 'x'.repeat(17_000) },
      Object.fromEntries(Array.from({ length: 40 }, (_, index) => [`key${index}`, index])),
    ];
    const bytes = encode(documents.map((deviceData) => ({ patientId: PATIENT, measurementTime: new Date(NOW_MS - 60_000), heartRate: 70, deviceData })));
    expect(streamOutcomes(bytes)).toEqual(referenceOutcomes(bytes));
  });

  it('reads encodings no generated encoder writes as the generated decoder does', () => {
    const reading = () => new BinaryWriter().uint32(18).string(PATIENT).uint32(56).int32(70);
    const timestamp = (seconds: bigint, nanos: number) => new BinaryWriter().uint32(8).int64(seconds).uint32(16).int32(nanos).finish();
    const value = (write: (writer: BinaryWriter) => BinaryWriter) => write(new BinaryWriter()).finish();
    const entry = (key: string, item: Uint8Array) => new BinaryWriter().uint32(10).string(key).uint32(18).bytes(item).finish();
    const struct = (...entries: Uint8Array[]) => entries.reduce((writer, item) => writer.uint32(10).bytes(item), new BinaryWriter()).finish();
    const readings = [
      // Timestamps no Date holds, or with nanos out of range.
      reading().uint32(34).bytes(timestamp(9_223_372_036_854_775_807n, 0)),
      reading().uint32(34).bytes(timestamp(-9_223_372_036_854_775_808n, 0)),
      reading().uint32(34).bytes(timestamp(1_700_000_000n, -1)),
      reading().uint32(34).bytes(timestamp(1_700_000_000n, 2_000_000_000)),
      reading().uint32(34).bytes(new Uint8Array()),
      // A measure sent twice (the last counts), a negative one (a 10-byte varint), an empty visit date.
      reading().uint32(34).bytes(timestamp(1_764_000_000n, 5)).uint32(40).int32(90).uint32(40).int32(130).uint32(48).int32(-5),
      reading().uint32(34).bytes(timestamp(1_764_000_000n, 0)).uint32(26).bytes(new Uint8Array()),
      // A known field with another wire type, an unknown field, vital_id and create_time sent.
      reading().uint32(34).bytes(timestamp(1_764_000_000n, 0)).uint32(41).fixed64(5n),
      reading().uint32(34).bytes(timestamp(1_764_000_000n, 0)).uint32(99 << 3).int32(1),
      reading().uint32(10).string('vital').uint32(34).bytes(timestamp(1_764_000_000n, 0)).uint32(82).bytes(timestamp(1n, 0)),
      // Device data the decoder hands over: a repeated key, a Value of two kinds, a Value of none.
      reading()
        .uint32(34)
        .bytes(timestamp(1_764_000_000n, 0))
        .uint32(74)
        .bytes(struct(entry('a', value((w) => w.uint32(17).double(1))), entry('a', value((w) => w.uint32(17).double(2))))),
      reading()
        .uint32(34)
        .bytes(timestamp(1_764_000_000n, 0))
        .uint32(74)
        .bytes(struct(entry('a', value((w) => w.uint32(17).double(1).uint32(26).string('one'))))),
      reading().uint32(34).bytes(timestamp(1_764_000_000n, 0)).uint32(74).bytes(struct(entry('a', new Uint8Array()))),
      // A bool written as a 10-byte varint.
      reading()
        .uint32(34)
        .bytes(timestamp(1_764_000_000n, 0))
        .uint32(74)
        .bytes(struct(entry('on', value((w) => w.uint32(32).uint64(1n << 40n))))),
    ];
    const bytes = readings.reduce((writer, item) => writer.uint32(10).bytes(item.finish()), new BinaryWriter()).finish();
    expect(streamOutcomes(bytes)).toEqual(referenceOutcomes(bytes));
  });

  it('throws where the generated decoder throws, and otherwise reads what it reads, from corrupted bytes', () => {
    const random = seededRandom(11);
    const valid = encode(Array.from({ length: 20 }, () => randomReading(random)), '4b0b3f6e-7a0e-4b8f-9f0e-1c2d3e4f5a6b');
    const attempt = (outcomes: (bytes: Uint8Array) => Outcome[], bytes: Uint8Array) => {
      try {
        return outcomes(bytes);
      } catch (error) {
        return (error as Error).message;
      }
    };
    let thrown = 0;
    for (let round = 0; round < 2_000; round += 1) {
      const bytes = Uint8Array.from(valid);
      for (let flips = 1 + Math.floor(random() * 3); flips > 0; flips -= 1) {
        bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      }
      const reference = attempt(referenceOutcomes, bytes);
      thrown += typeof reference === 'string' ? 1 : 0;
      expect(attempt(streamOutcomes, bytes), `round ${round}`).toEqual(reference);
    }
    expect(thrown).toBeGreaterThan(0);
  });

  it('keeps the request_id, and encodes for the kit what the generated decoder makes of the bytes', () => {
    const bytes = encode([{ patientId: PATIENT, heartRate: 70, deviceData: { b: 1, a: 2 } }], '4B0B3F6E-7A0E-4B8F-9F0E-1C2D3E4F5A6B');
    const message = decodeStreamVitalsMessage(bytes);
    expect(message.requestId).toBe('4B0B3F6E-7A0E-4B8F-9F0E-1C2D3E4F5A6B');
    expect(StreamVitalsMessage.encode(message).finish()).toEqual(vitalsV1.StreamVitalsRequest.encode(vitalsV1.StreamVitalsRequest.decode(bytes)).finish());
  });
});
