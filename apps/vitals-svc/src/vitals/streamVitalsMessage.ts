import { vitalsV1 } from '@clinical/contracts';
import { deviceDataJson } from './deviceDataJson.js';
import { readingFieldsOf, type ReadingFields } from './validateReading.js';

/**
 * A StreamVitals message as vitals-svc decodes it: the request_id, and the
 * readings in columns (typed arrays), without an object, a Date or a Timestamp
 * per reading. The generated decoder makes a dozen objects per reading; a
 * stream of a million readings spent more CPU on them (and on collecting
 * them) than PostgreSQL spent writing the rows.
 */
export interface StreamVitalsMessage {
  readonly requestId: string;
  readonly readings: ReceivedReadings;
  /** The message as it came, for the kit's check that decoding kept everything (see `encode`). */
  readonly bytes: Uint8Array;
}

const HAS_TIME = 1;
const HAS_VISIT = 2;
const HAS_SYSTOLIC = 4;
const HAS_DIASTOLIC = 8;
const HAS_HEART_RATE = 16;
const HAS_TEMPERATURE = 32;

/** The largest |time| a Date holds, in milliseconds; beyond it, an invalid Date. */
const MAX_DATE_MS = 8.64e15;
const TWO_TO_32 = 4_294_967_296;

// What the generated decoder decodes strings with (non-fatal: invalid UTF-8 becomes U+FFFD).
const utf8 = new TextDecoder();

/** The readings of one message, column by column; `read` fills a ReadingFields with one of them. */
export class ReceivedReadings {
  readonly patientIds: string[];
  private readonly presence: Uint8Array;
  private readonly measurementMs: Float64Array;
  private readonly visit: Int32Array;
  private readonly measures: Int32Array;
  private readonly temperature: Float64Array;
  /** The JSON text of device_data, by index (see deviceDataJson). */
  private readonly deviceData = new Map<number, string>();
  /** The readings, when the generated decoder decoded the message (see decodeStreamVitalsMessage). */
  private decoded: readonly vitalsV1.VitalSigns[] | undefined;

  /** Columns for `columns` readings (none when the generated decoder decoded them), `length` readings in all. */
  constructor(columns: number, readonly length = columns) {
    this.patientIds = new Array<string>(columns);
    this.presence = new Uint8Array(columns);
    this.measurementMs = new Float64Array(columns);
    this.visit = new Int32Array(3 * columns);
    this.measures = new Int32Array(3 * columns);
    this.temperature = new Float64Array(columns);
  }

  /** Fills `fields` with reading `index`, as the generated decoder would have decoded it. */
  read(index: number, fields: ReadingFields): void {
    const decoded = this.decoded?.[index];
    if (decoded) {
      readingFieldsOf(decoded, fields);
      return;
    }
    const present = this.presence[index] ?? 0;
    fields.patientId = this.patientIds[index] ?? '';
    fields.measurementSent = (present & HAS_TIME) !== 0;
    fields.measurementMs = this.measurementMs[index] ?? 0;
    fields.visitDate =
      present & HAS_VISIT
        ? { year: this.visit[3 * index] ?? 0, month: this.visit[3 * index + 1] ?? 0, day: this.visit[3 * index + 2] ?? 0 }
        : undefined;
    fields.systolicBp = present & HAS_SYSTOLIC ? this.measures[3 * index] : undefined;
    fields.diastolicBp = present & HAS_DIASTOLIC ? this.measures[3 * index + 1] : undefined;
    fields.heartRate = present & HAS_HEART_RATE ? this.measures[3 * index + 2] : undefined;
    fields.temperatureSent = (present & HAS_TEMPERATURE) !== 0;
    fields.temperatureCelsius = this.temperature[index] ?? 0;
    fields.deviceData = undefined;
    fields.deviceDataJson = this.deviceData.get(index);
  }

  /** The readings of a message the generated decoder decoded. */
  static of(readings: readonly vitalsV1.VitalSigns[]): ReceivedReadings {
    const received = new ReceivedReadings(0, readings.length);
    received.decoded = readings;
    return received;
  }

  /**
   * Decodes reading `index` from `bytes[start, end)` into the columns, or
   * returns false when it holds anything but the common fields, well formed:
   * create_time, vital_id, unknown fields, a known field of another wire type,
   * a Timestamp or Date with other fields, an overlong varint, device_data
   * other than a plain document (see deviceDataJson).
   */
  decodeInto(index: number, bytes: Buffer, start: number, end: number): boolean {
    cursor.bytes = bytes;
    cursor.position = start;
    cursor.end = end;
    let present = 0;
    this.patientIds[index] = '';
    while (cursor.position < end) {
      const tag = varint32();
      switch (tag) {
        case 18: {
          const length = lengthPrefix();
          if (length < 0) {
            return false;
          }
          this.patientIds[index] = internedString(bytes, cursor.position, cursor.position + length);
          cursor.position += length;
          break;
        }
        case 26: {
          if (!this.decodeVisitDate(index)) {
            return false;
          }
          present |= HAS_VISIT;
          break;
        }
        case 34: {
          if (!this.decodeMeasurementTime(index)) {
            return false;
          }
          present |= HAS_TIME;
          break;
        }
        case 40:
        case 48:
        case 56: {
          const value = varint32();
          if (value < 0) {
            return false;
          }
          // int32: the low 32 bits, signed.
          this.measures[3 * index + (tag - 40) / 8] = value | 0;
          present |= tag === 40 ? HAS_SYSTOLIC : tag === 48 ? HAS_DIASTOLIC : HAS_HEART_RATE;
          break;
        }
        case 74: {
          const length = lengthPrefix();
          const json = length < 0 ? undefined : deviceDataJson(bytes, cursor.position, cursor.position + length);
          if (json === undefined) {
            return false;
          }
          this.deviceData.set(index, json);
          cursor.position += length;
          break;
        }
        case 65: {
          if (cursor.position + 8 > end) {
            return false;
          }
          this.temperature[index] = bytes.readDoubleLE(cursor.position);
          cursor.position += 8;
          present |= HAS_TEMPERATURE;
          break;
        }
        default:
          return false;
      }
    }
    this.presence[index] = present;
    return true;
  }

  /** google.type.Date: year 1, month 2, day 3, each an int32; a field repeated replaces the message (as generated). */
  private decodeVisitDate(index: number): boolean {
    const at = 3 * index;
    this.visit[at] = 0;
    this.visit[at + 1] = 0;
    this.visit[at + 2] = 0;
    const outer = enterMessage();
    if (outer < 0) {
      return false;
    }
    while (cursor.position < cursor.end) {
      const tag = varint32();
      const value = tag === 8 || tag === 16 || tag === 24 ? varint32() : -1;
      if (value < 0) {
        return false;
      }
      this.visit[at + tag / 8 - 1] = value | 0;
    }
    cursor.end = outer;
    return true;
  }

  /**
   * google.protobuf.Timestamp (seconds 1: int64, nanos 2: int32) as the
   * generated decoder turns it into a Date, in milliseconds: seconds x 1,000
   * + nanos / 10^6, truncated as a Date truncates, NaN when no Date holds it.
   */
  private decodeMeasurementTime(index: number): boolean {
    const outer = enterMessage();
    if (outer < 0) {
      return false;
    }
    let seconds = 0;
    let nanos = 0;
    while (cursor.position < cursor.end) {
      const tag = varint32();
      if (tag === 8) {
        if (!varint64()) {
          return false;
        }
        seconds = (int64High | 0) * TWO_TO_32 + (int64Low >>> 0);
      } else if (tag === 16) {
        const value = varint32();
        if (value < 0) {
          return false;
        }
        nanos = value | 0;
      } else {
        return false;
      }
    }
    cursor.end = outer;
    let millis = seconds * 1_000;
    millis += nanos / 1_000_000;
    this.measurementMs[index] = Math.abs(millis) > MAX_DATE_MS ? Number.NaN : Math.trunc(millis) + 0;
    return true;
  }
}

/**
 * Where the decoder is: one for the module, as decoding is synchronous and
 * one reading at a time (an object per reading, or per nested message, made
 * the decoder allocate more than the readings it decoded).
 */
const cursor: { bytes: Buffer; position: number; end: number } = { bytes: Buffer.alloc(0), position: 0, end: 0 };

/** A varint of at most 10 bytes as its low 32 bits (unsigned), or -1 when malformed or past the end. */
function varint32(): number {
  const { bytes, end } = cursor;
  let position = cursor.position;
  let result = 0;
  for (let shift = 0; shift < 70; shift += 7) {
    if (position >= end) {
      return -1;
    }
    const byte = bytes[position++] ?? 0;
    if (shift < 32) {
      result |= (byte & 0x7f) << shift;
    }
    if (byte < 0x80) {
      cursor.position = position;
      return result >>> 0;
    }
  }
  return -1;
}

/** The two halves of the last varint64 read. */
let int64Low = 0;
let int64High = 0;

/** Reads a varint of at most 10 bytes into int64Low and int64High; false when malformed or past the end. */
function varint64(): boolean {
  const { bytes, end } = cursor;
  let position = cursor.position;
  let low = 0;
  let high = 0;
  for (let shift = 0; shift < 70; shift += 7) {
    if (position >= end) {
      return false;
    }
    const byte = bytes[position++] ?? 0;
    const bits = byte & 0x7f;
    if (shift < 28) {
      low |= bits << shift;
    } else if (shift === 28) {
      low |= (bits & 0x0f) << 28;
      high |= bits >> 4;
    } else {
      high |= bits << (shift - 32);
    }
    if (byte < 0x80) {
      cursor.position = position;
      int64Low = low;
      int64High = high;
      return true;
    }
  }
  return false;
}

/** A length prefix that stays within the current message, or -1. */
function lengthPrefix(): number {
  const length = varint32();
  return length < 0 || cursor.position + length > cursor.end ? -1 : length;
}

/** Enters a length-delimited message: narrows the end to it and returns the outer end (restore it after), or -1. */
function enterMessage(): number {
  const length = lengthPrefix();
  if (length < 0) {
    return -1;
  }
  const outer = cursor.end;
  cursor.end = cursor.position + length;
  return outer;
}

/** Strings decoded lately (patient ids), with their bytes, by a hash of those; at most INTERNED_MAX, then forgotten. */
const interned = new Map<number, { readonly bytes: Uint8Array; readonly text: string }>();
const INTERNED_MAX = 4_096;

/**
 * UTF-8 text as the generated decoder decodes it, and one string for each
 * ASCII value seen lately (every UUID): a stream names the same patients
 * thousands of times, and a string per reading, then the hashing of each in
 * every lookup by patient, cost more than hashing the bytes here.
 */
function internedString(bytes: Buffer, start: number, end: number): string {
  let hash = 0x811c9dc5 | 0;
  for (let index = start; index < end; index += 1) {
    const byte = bytes[index] ?? 0;
    if (byte >= 0x80) {
      return utf8.decode(bytes.subarray(start, end));
    }
    hash = Math.imul(hash ^ byte, 0x01000193);
  }
  const known = interned.get(hash);
  if (known !== undefined && sameBytes(known.bytes, bytes, start, end)) {
    return known.text;
  }
  const text = bytes.toString('latin1', start, end);
  if (interned.size >= INTERNED_MAX) {
    interned.clear();
  }
  interned.set(hash, { bytes: Uint8Array.from(bytes.subarray(start, end)), text });
  return text;
}

function sameBytes(known: Uint8Array, bytes: Buffer, start: number, end: number): boolean {
  if (known.length !== end - start) {
    return false;
  }
  for (let index = 0; index < known.length; index += 1) {
    if (known[index] !== bytes[start + index]) {
      return false;
    }
  }
  return true;
}

/**
 * Decodes a StreamVitals message. The common shape (readings 1 and
 * request_id 2 at the top, each reading with only its common fields, well
 * formed) is read straight into columns; a message with anything else is
 * decoded wholly by the generated decoder, so that what is accepted, and how
 * (a reading cut short by a stray end-group tag, say), is the generated
 * decoder's, and malformed bytes throw as they make it throw (the kit answers
 * INVALID_ARGUMENT, `withTolerantDecoding`).
 */
export function decodeStreamVitalsMessage(input: Uint8Array): StreamVitalsMessage {
  const bytes = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  // First the top level, to count the readings (and size the columns); then each reading.
  let count = 0;
  let requestId = '';
  cursor.bytes = bytes;
  cursor.position = 0;
  cursor.end = bytes.length;
  while (cursor.position < bytes.length) {
    const tag = varint32();
    const length = tag === 10 || tag === 18 ? lengthPrefix() : -1;
    if (length < 0) {
      return wholly(bytes);
    }
    if (tag === 10) {
      count += 1;
    } else {
      requestId = utf8.decode(bytes.subarray(cursor.position, cursor.position + length));
    }
    cursor.position += length;
  }
  const readings = new ReceivedReadings(count);
  for (let position = 0, index = 0; index < count; ) {
    cursor.bytes = bytes;
    cursor.position = position;
    cursor.end = bytes.length;
    const tag = varint32();
    const length = lengthPrefix();
    const start = cursor.position;
    position = start + length;
    if (tag === 10) {
      if (!readings.decodeInto(index, bytes, start, position)) {
        return wholly(bytes);
      }
      index += 1;
    }
  }
  return { requestId, readings, bytes };
}

/** A message decoded wholly by the generated decoder. */
function wholly(bytes: Uint8Array): StreamVitalsMessage {
  const message = vitalsV1.StreamVitalsRequest.decode(bytes);
  return { requestId: message.requestId, readings: ReceivedReadings.of(message.readings), bytes };
}

/**
 * StreamVitalsRequest's codec for the server: decodes with
 * decodeStreamVitalsMessage. Encoding is only asked by the kit to see
 * whether decoding dropped a map key ("__proto__"): it encodes what the
 * generated decoder makes of the bytes, which is what would be stored.
 */
export const StreamVitalsMessage = {
  decode: decodeStreamVitalsMessage,
  encode: (message: StreamVitalsMessage) => vitalsV1.StreamVitalsRequest.encode(vitalsV1.StreamVitalsRequest.decode(message.bytes)),
};
