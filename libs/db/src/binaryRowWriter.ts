/** Microseconds and days in PostgreSQL's binary formats count from 2000-01-01T00:00:00Z. */
const POSTGRES_EPOCH_MS = Date.UTC(2000, 0, 1);
const POSTGRES_EPOCH_DAY = POSTGRES_EPOCH_MS / 86_400_000;
const TWO_TO_32 = 4_294_967_296;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** numeric's digit groups as they are computed, reused (one row is written at a time). */
const numericGroups = new Int32Array(8);

/** The bytes a binary COPY starts with: signature, flags, header extension length. */
export const BINARY_COPY_HEADER = Buffer.from([
  0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
]);
/** The bytes a binary COPY ends with: a field count of -1. */
export const BINARY_COPY_TRAILER = Buffer.from([0xff, 0xff]);

/**
 * Rows in PostgreSQL's binary COPY format (`COPY ... FROM STDIN (FORMAT
 * binary)`), written into one growing buffer: per row a field count, then per
 * field its length (-1 for NULL) and its value in the type's binary send
 * format. The server parses binary rows without the text parsing of every
 * value that the text format costs it. Values are written as the type's
 * send function writes them (a numeric without leading or trailing zero
 * digit groups), so the bytes of a row are those of the stored row, jsonb
 * aside (PostgreSQL sends jsonb back in its own normalised text).
 * Each method checks its value's range; the column types are the caller's
 * to match (a wrong type is refused by the server, row and all).
 */
export class BinaryRowWriter {
  private buffer: Buffer;
  private position = 0;
  private rows = 0;

  constructor(initialBytes = 1_024) {
    this.buffer = Buffer.allocUnsafe(initialBytes);
  }

  /** Rows begun so far. */
  get rowCount(): number {
    return this.rows;
  }

  /** Bytes written so far. */
  get byteLength(): number {
    return this.position;
  }

  /** The rows written so far (a view of the buffer, valid until the next write or reset). */
  bytes(): Buffer {
    return this.buffer.subarray(0, this.position);
  }

  /** Forgets every row, keeping the buffer. */
  reset(): void {
    this.position = 0;
    this.rows = 0;
  }

  /** Begins a row of `fieldCount` fields; the next that many calls write them. */
  row(fieldCount: number): this {
    if (!Number.isInteger(fieldCount) || fieldCount < 0 || fieldCount > 0x7fff) {
      throw new RangeError('BinaryRowWriter.row: a row has 0 to 32767 fields');
    }
    this.reserve(2);
    this.put16(fieldCount);
    this.rows += 1;
    return this;
  }

  null(): this {
    this.reserve(4);
    this.put32(-1);
    return this;
  }

  /** A uuid from its canonical text (any case). */
  uuid(text: string): this {
    if (!UUID.test(text)) {
      throw new RangeError('BinaryRowWriter.uuid: not a UUID');
    }
    this.field(16);
    const at = this.position;
    for (let index = 0, byte = 0; byte < 16; byte += 1) {
      if (text.charCodeAt(index) === 0x2d) {
        index += 1;
      }
      this.buffer[at + byte] = (hexValue(text.charCodeAt(index)) << 4) | hexValue(text.charCodeAt(index + 1));
      index += 2;
    }
    this.position += 16;
    return this;
  }

  /** A uuid from its 16 bytes. */
  uuidBytes(bytes: Uint8Array): this {
    if (bytes.length !== 16) {
      throw new RangeError('BinaryRowWriter.uuidBytes: a UUID is 16 bytes');
    }
    this.field(16);
    // A loop: for 16 bytes it is cheaper than a native copy's call.
    const buffer = this.buffer;
    const at = this.position;
    for (let index = 0; index < 16; index += 1) {
      buffer[at + index] = bytes[index] ?? 0;
    }
    this.position += 16;
    return this;
  }

  int4(value: number): this {
    if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
      throw new RangeError('BinaryRowWriter.int4: out of range');
    }
    this.field(4);
    this.put32(value);
    return this;
  }

  /** A date: the calendar day `epochDay` days after 1970-01-01. */
  date(epochDay: number): this {
    return this.int4(epochDay - POSTGRES_EPOCH_DAY);
  }

  /** A timestamptz at `epochMs` milliseconds since 1970-01-01T00:00:00Z (a JS Date's time). */
  timestamptz(epochMs: number): this {
    // Microseconds since 2000 as a signed 64-bit integer, written as two 32-bit halves: exact
    // while it is a safe integer (within about 285 years of 2000).
    const micros = (epochMs - POSTGRES_EPOCH_MS) * 1_000;
    if (!Number.isInteger(epochMs) || !Number.isSafeInteger(micros)) {
      throw new RangeError('BinaryRowWriter.timestamptz: not a whole number of milliseconds within range');
    }
    const high = Math.floor(micros / TWO_TO_32);
    this.field(8);
    this.put32(high);
    this.put32(micros - high * TWO_TO_32);
    return this;
  }

  /**
   * A numeric of `unscaled` x 10^-scale, with that scale: (366, 1) is 36.6,
   * (-1250, 2) is -12.50. `unscaled` must be a safe integer, and so must it be
   * once its digits after the point are padded to a multiple of four.
   */
  numeric(unscaled: number, scale: number): this {
    // numeric's binary form: base-10000 digit groups aligned on the decimal point, the first
    // group's power of 10000 (weight), a sign, the scale; no leading or trailing zero groups.
    const padding = (4 - (scale % 4)) % 4;
    let rest = Math.abs(unscaled) * 10 ** padding;
    if (!Number.isSafeInteger(unscaled) || !Number.isInteger(scale) || scale < 0 || !Number.isSafeInteger(rest)) {
      throw new RangeError('BinaryRowWriter.numeric: out of range');
    }
    // The digit groups from the least significant (at most 5 for a safe integer); the lowest
    // fractionGroups are after the point.
    const groups = numericGroups;
    let length = 0;
    for (; rest > 0; rest = Math.floor(rest / 10_000)) {
      groups[length++] = rest % 10_000;
    }
    const fractionGroups = (scale + padding) / 4;
    const weight = length - fractionGroups - 1;
    let lowest = 0;
    while (lowest < length && groups[lowest] === 0) {
      lowest += 1;
    }
    const count = length - lowest;
    this.field(8 + 2 * count);
    this.put16(count);
    this.put16(count === 0 ? 0 : weight);
    this.put16(unscaled < 0 ? 0x4000 : 0);
    this.put16(scale);
    for (let index = length - 1; index >= lowest; index -= 1) {
      this.put16(groups[index] ?? 0);
    }
    return this;
  }

  /** A jsonb from JSON text (the server parses and checks it). */
  jsonb(json: string): this {
    const length = Buffer.byteLength(json);
    this.field(1 + length);
    // jsonb's binary format: a version byte, then the JSON text.
    this.buffer[this.position] = 1;
    this.buffer.write(json, this.position + 1, length, 'utf8');
    this.position += 1 + length;
    return this;
  }

  /** Writes a field's length and makes room for its value. */
  private field(length: number): void {
    this.reserve(4 + length);
    this.put32(length);
  }

  // Big-endian writes by byte: the values are checked by the public methods, and Buffer's own
  // writers cost several times as much in a row of nine fields.
  private put16(value: number): void {
    const buffer = this.buffer;
    const at = this.position;
    buffer[at] = (value >>> 8) & 0xff;
    buffer[at + 1] = value & 0xff;
    this.position = at + 2;
  }

  private put32(value: number): void {
    const buffer = this.buffer;
    const at = this.position;
    buffer[at] = (value >>> 24) & 0xff;
    buffer[at + 1] = (value >>> 16) & 0xff;
    buffer[at + 2] = (value >>> 8) & 0xff;
    buffer[at + 3] = value & 0xff;
    this.position = at + 4;
  }

  private reserve(bytes: number): void {
    if (this.position + bytes <= this.buffer.length) {
      return;
    }
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.position + bytes));
    this.buffer.copy(grown, 0, 0, this.position);
    this.buffer = grown;
  }
}

/** The value of a hexadecimal digit's character code (validated by the caller). */
function hexValue(code: number): number {
  return code <= 0x39 ? code - 0x30 : (code | 0x20) - 0x57;
}
