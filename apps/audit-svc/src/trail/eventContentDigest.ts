import { hash } from 'node:crypto';

/**
 * Where each column of an event sits in a binary COPY row, from `first` on,
 * in the order of audit_event_content_hash's arguments: event_id (uuid),
 * event_seq (int8), event_type, entity_type, entity_id (uuid), entity_key,
 * patient_id (uuid), user_id, action, payload (jsonb), ip_address AS TEXT,
 * "timestamp" (timestamptz), request_id, trace_id, reason, db_role.
 */
const EVENT_CONTENT_FIELDS = 16;

const SEPARATOR = 0x1f;
const NULL_MARK = 0x1e;
/** PostgreSQL counts timestamps in microseconds from 2000-01-01; the content hash from 1970-01-01. */
const POSTGRES_EPOCH_MICROSECONDS = 946_684_800_000_000;
const JSONB_VERSION = 1;
/** Room beyond the fields' own bytes: separators, and uuids and integers turned to text. */
const TEXT_FORM_ROOM = 256;

/** How each column becomes text; NULLABLE: coalesced to \x1e when NULL (else left out, as concat_ws does). */
const TEXT = 0;
const UUID = 1;
const INT8 = 2;
const TIME = 3;
const JSONB = 4;
const NULLABLE = 8;
const KINDS = Uint8Array.from([
  UUID, // event_id
  INT8, // event_seq
  TEXT, // event_type
  TEXT, // entity_type
  UUID | NULLABLE, // entity_id
  TEXT | NULLABLE, // entity_key
  UUID | NULLABLE, // patient_id
  TEXT, // user_id
  TEXT, // action
  JSONB, // payload
  TEXT | NULLABLE, // ip_address::text
  TIME, // "timestamp"
  TEXT | NULLABLE, // request_id
  TEXT | NULLABLE, // trace_id
  TEXT | NULLABLE, // reason
  TEXT, // db_role
]);

/**
 * Where the canonical text is written; it grows for a bigger event and stays
 * grown. Words are copied through DataViews (of it, and of the last chunk
 * read from): a loop of single bytes cost more than hashing the result.
 */
let scratch = Buffer.allocUnsafe(4_096);
let scratchView: DataView = new DataView(scratch.buffer, scratch.byteOffset, scratch.length);
let chunk: Buffer | undefined;
let chunkView: DataView = scratchView;
/**
 * Views of scratch's first n bytes, by n, for n below its first size: a new
 * view per event was most of the garbage a verification made (events of a
 * trail come in few lengths).
 */
let views = new Array<Buffer>(4_096);

/**
 * The sha256 of an event's canonical content, as audit_event_content_hash()
 * computes it in PostgreSQL (db/migrations/1764200000000_audit-chain.sql),
 * from the event's columns as binary COPY sends them: the 32 digest bytes as
 * a latin1 string (the cheapest form node:crypto returns).
 *
 * The canonical text is concat_ws(E'\x1f', ...) of the text forms: uuids
 * lower-case with hyphens, integers in decimal, the time as epoch
 * microseconds, jsonb in its normalised text form (binary COPY sends that
 * very text after a version byte), ip_address as PostgreSQL renders it (the
 * COPY selects it as text: PostgreSQL's IPv6 abbreviation is not worth
 * redoing). Nullable columns stand as \x1e when NULL; a NULL in a NOT NULL
 * column (a superuser's doing) is left out, separator and all, as concat_ws
 * leaves it out. Text is hashed in the bytes the server sends, UTF-8, the
 * encoding the sealer's session hashed it in.
 */
export function eventContentDigest(buffer: Buffer, starts: Int32Array, lengths: Int32Array, first: number): string {
  const last = first + EVENT_CONTENT_FIELDS - 1;
  // The fields lie one after the other in the row: their extent bounds their text.
  const room = TEXT_FORM_ROOM + starts[last]! + Math.max(lengths[last]!, 0) - starts[first]!;
  if (scratch.length < room) {
    scratch = Buffer.allocUnsafe(Math.max(room, scratch.length * 2));
    scratchView = new DataView(scratch.buffer, scratch.byteOffset, scratch.length);
    views = new Array<Buffer>(4_096);
  }
  if (buffer !== chunk) {
    chunk = buffer;
    chunkView = new DataView(buffer.buffer, buffer.byteOffset, buffer.length);
  }
  const out = scratch;
  // Each value is written followed by a separator, and the last separator dropped.
  let at = 0;
  for (let index = 0; index < EVENT_CONTENT_FIELDS; index += 1) {
    const start = starts[first + index]!;
    const length = lengths[first + index]!;
    const kind = KINDS[index]!;
    if (length < 0) {
      if ((kind & NULLABLE) !== 0) {
        out[at++] = NULL_MARK;
        out[at++] = SEPARATOR;
      }
      continue;
    }
    switch (kind & ~NULLABLE) {
      case UUID:
        at = writeUuid(start, length, out, at);
        break;
      case INT8:
        at = writeInt8(buffer, start, length, 0, out, at);
        break;
      case TIME:
        at = writeInt8(buffer, start, length, POSTGRES_EPOCH_MICROSECONDS, out, at);
        break;
      case JSONB:
        if (length < 1 || buffer[start] !== JSONB_VERSION) {
          throw new Error(`unknown jsonb binary format ${buffer[start] ?? 'empty'}`);
        }
        at = writeBytes(buffer, start + 1, length - 1, out, at);
        break;
      default:
        at = writeBytes(buffer, start, length, out, at);
    }
    out[at++] = SEPARATOR;
  }
  const length = Math.max(at - 1, 0);
  const view = length < views.length ? (views[length] ??= out.subarray(0, length)) : out.subarray(0, length);
  return hash('sha256', view, 'binary');
}

/** Copies bytes from the current chunk into scratch, four at a time. */
function writeBytes(buffer: Buffer, start: number, length: number, out: Buffer, at: number): number {
  let offset = 0;
  for (; offset + 4 <= length; offset += 4) {
    scratchView.setUint32(at + offset, chunkView.getUint32(start + offset));
  }
  for (; offset < length; offset += 1) {
    out[at + offset] = buffer[start + offset]!;
  }
  return at + length;
}

/** Each byte's two hex digits as one big-endian 16-bit word. */
const HEX_PAIRS = Uint16Array.from({ length: 256 }, (_, byte) => {
  const digits = byte.toString(16).padStart(2, '0');
  return (digits.charCodeAt(0) << 8) | digits.charCodeAt(1);
});

/** A uuid as PostgreSQL writes it: lower-case hex, hyphens after the 4th, 6th, 8th and 10th byte; two bytes per store. */
function writeUuid(start: number, length: number, out: Buffer, at: number): number {
  if (length !== 16) {
    throw new Error(`a uuid of ${length} bytes`);
  }
  for (let offset = 0; offset < 16; offset += 2) {
    if (offset === 4 || offset === 6 || offset === 8 || offset === 10) {
      out[at++] = 0x2d;
    }
    const bytes = chunkView.getUint16(start + offset);
    scratchView.setUint32(at, ((HEX_PAIRS[bytes >> 8]! << 16) | HEX_PAIRS[bytes & 0xff]!) >>> 0);
    at += 4;
  }
  return at;
}

const HUNDRED_MILLION = 100_000_000;
/** Each number below 10,000 as four ASCII digits in one big-endian word: four digits per lookup and store. */
const DIGIT_QUADS = Uint32Array.from({ length: 10_000 }, (_, number) => {
  const digits = String(number).padStart(4, '0');
  return ((digits.charCodeAt(0) << 24) | (digits.charCodeAt(1) << 16) | (digits.charCodeAt(2) << 8) | digits.charCodeAt(3)) >>> 0;
});

/** The number of decimal digits of `value` (0 to 99,999,999). */
function digitCount(value: number): number {
  return value < 10_000
    ? value < 100
      ? value < 10
        ? 1
        : 2
      : value < 1_000
        ? 3
        : 4
    : value < 1_000_000
      ? value < 100_000
        ? 5
        : 6
      : value < 10_000_000
        ? 7
        : 8;
}

/** `value` (0 to 99,999,999) in `digits` decimal digits (leading zeros when more than it has) ending at `end`. */
function writeDigits(value: number, digits: number, out: Buffer, end: number): void {
  let index = end;
  let rest = value;
  let left = digits;
  for (; left >= 4; left -= 4) {
    const quotient = (rest / 10_000) | 0;
    index -= 4;
    scratchView.setUint32(index, DIGIT_QUADS[rest - quotient * 10_000]!);
    rest = quotient;
  }
  for (; left > 0; left -= 1) {
    const quotient = (rest / 10) | 0;
    out[--index] = 0x30 + rest - quotient * 10;
    rest = quotient;
  }
}

/**
 * An int8 (plus `offset`) in decimal. Exact: doubles while the value is
 * below 2^53 (every event_seq, every time from 1715 to 2285), cut into two
 * int32 halves of eight digits (integer division is far cheaper on int32
 * than on doubles); BigInt beyond.
 */
function writeInt8(buffer: Buffer, start: number, length: number, offset: number, out: Buffer, at: number): number {
  if (length !== 8) {
    throw new Error(`an int8 of ${length} bytes`);
  }
  const high = buffer.readInt32BE(start);
  let value = high * 4_294_967_296 + buffer.readUInt32BE(start + 4) + offset;
  if (high < -0x20_0000 || high >= 0x20_0000 || !Number.isSafeInteger(value)) {
    return at + out.write(String(buffer.readBigInt64BE(start) + BigInt(offset)), at, 'latin1');
  }
  if (value < 0) {
    out[at++] = 0x2d;
    value = -value;
  }
  if (value < HUNDRED_MILLION) {
    const digits = digitCount(value);
    writeDigits(value, digits, out, at + digits);
    return at + digits;
  }
  // The division may round up near 2^53; the products and differences are exact and set it right.
  let upper = Math.floor(value / HUNDRED_MILLION);
  let lower = value - upper * HUNDRED_MILLION;
  if (lower < 0) {
    upper -= 1;
    lower += HUNDRED_MILLION;
  }
  const end = at + digitCount(upper) + 8;
  writeDigits(lower, 8, out, end);
  writeDigits(upper, digitCount(upper), out, end - 8);
  return end;
}
