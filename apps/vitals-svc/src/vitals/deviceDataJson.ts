import { MAX_DEVICE_DATA_BYTES, MAX_DEVICE_DATA_DEPTH } from './validateReading.js';

// What the generated decoder decodes strings with (non-fatal: invalid UTF-8 becomes U+FFFD).
const utf8 = new TextDecoder();

/** An array index as a JavaScript object orders it: before every other key, whatever the order it came in. */
const ARRAY_INDEX = /^(?:0|[1-9]\d{0,9})$/;

/** Keys per object checked for repeats one by one; an object with more goes the general way. */
const MAX_PLAIN_KEYS = 32;

const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;

// The decoder's state: decoding is synchronous, one document at a time.
let input: Buffer = Buffer.alloc(0);
let position = 0;
/** The JSON text being written, as UTF-8: one buffer, kept (a document is at most MAX_DEVICE_DATA_BYTES). */
const output = Buffer.alloc(MAX_DEVICE_DATA_BYTES + 8);
let written = 0;
/** Whether the output is all ASCII so far (then it is read back as latin1, the cheapest way). */
let ascii = true;

/**
 * The JSON text of a google.protobuf.Struct encoded in `encoded[start, end)`,
 * exactly as JSON.stringify writes the object the generated decoder makes of
 * it (Struct.unwrap), when that object is a device_data the rules accept; or
 * undefined, for the caller to decode it the generated way and check it
 * (checkJsonDocument) for its exact problem. A stream carries device data on
 * a reading in ten: decoded into objects, checked, then stringified, it made
 * most of what the service allocated. Here the text is written as bytes, and
 * made a string once.
 *
 * Undefined (the general way decides) for anything out of the plain case: a
 * NUL, a value nested past MAX_DEVICE_DATA_DEPTH, JSON past
 * MAX_DEVICE_DATA_BYTES, a non-finite number, a key repeated in an object or
 * spelled like an array index (a JavaScript object reorders those), the key
 * "__proto__", more than MAX_PLAIN_KEYS keys in an object, a Value with no
 * kind or more than one, unknown fields, an encoding the generated decoder
 * would read otherwise.
 */
export function deviceDataJson(encoded: Buffer, start: number, end: number): string | undefined {
  input = encoded;
  position = start;
  written = 0;
  ascii = true;
  if (!struct(end, 1) || position !== end) {
    return undefined;
  }
  return output.toString(ascii ? 'latin1' : 'utf8', 0, written);
}

/** Writes a Struct up to `end`, an object at `depth` (the document is at 1); false when not plain. */
function struct(end: number, depth: number): boolean {
  if (depth > MAX_DEVICE_DATA_DEPTH || !put(0x7b)) {
    return false;
  }
  const keys: string[] = [];
  while (position < end) {
    // fields: map<string, Value> = 1, each entry { key = 1; value = 2 }.
    const entryEnd = varint() === 10 ? lengthEnd(end) : -1;
    if (entryEnd < 0 || varint() !== 10) {
      return false;
    }
    const keyEnd = lengthEnd(entryEnd);
    if (keyEnd < 0 || keys.length === MAX_PLAIN_KEYS || (keys.length > 0 && !put(COMMA))) {
      return false;
    }
    const keyAt = written;
    if (!string(keyEnd)) {
      return false;
    }
    const key = output.toString('latin1', keyAt, written);
    if (keys.includes(key) || key === '"__proto__"' || ARRAY_INDEX.test(key.slice(1, -1))) {
      return false;
    }
    keys.push(key);
    const valueEnd = varint() === 18 ? lengthEnd(entryEnd) : -1;
    if (valueEnd < 0 || !put(COLON) || !value(valueEnd, depth + 1) || position !== entryEnd) {
      return false;
    }
  }
  return put(0x7d);
}

/** Writes a Value up to `end` (exactly one of its kinds), at `depth`; false when not plain. */
function value(end: number, depth: number): boolean {
  if (depth > MAX_DEVICE_DATA_DEPTH || position >= end) {
    return false;
  }
  let plain: boolean;
  switch (varint()) {
    case 8: // null_value
      plain = varint() >= 0 && text('null');
      break;
    case 17: {
      // number_value
      if (position + 8 > end) {
        return false;
      }
      const number = input.readDoubleLE(position);
      position += 8;
      plain = Number.isFinite(number) && text(JSON.stringify(number));
      break;
    }
    case 26: {
      // string_value
      const textEnd = lengthEnd(end);
      plain = textEnd >= 0 && string(textEnd);
      break;
    }
    case 32: {
      // bool_value: any non-zero varint is true, as the generated decoder reads it (a 64-bit one included).
      const start = position;
      if (varint() < 0) {
        return false;
      }
      let on = false;
      for (let index = start; index < position; index += 1) {
        on ||= ((input[index] ?? 0) & 0x7f) !== 0;
      }
      plain = text(on ? 'true' : 'false');
      break;
    }
    case 42: {
      // struct_value
      const structEnd = lengthEnd(end);
      plain = structEnd >= 0 && struct(structEnd, depth);
      break;
    }
    case 50: {
      // list_value
      const listEnd = lengthEnd(end);
      plain = listEnd >= 0 && list(listEnd, depth);
      break;
    }
    default:
      return false;
  }
  // A second kind in the same Value: the generated decoder keeps both and unwraps by precedence.
  return plain && position === end;
}

/** Writes a ListValue up to `end`, an array at `depth`; false when not plain. */
function list(end: number, depth: number): boolean {
  if (!put(0x5b)) {
    return false;
  }
  for (let first = true; position < end; first = false) {
    const valueEnd = varint() === 10 ? lengthEnd(end) : -1;
    if (valueEnd < 0 || (!first && !put(COMMA)) || !value(valueEnd, depth + 1)) {
      return false;
    }
  }
  return put(0x5d);
}

/**
 * Writes the UTF-8 text up to `end` as a JSON string literal, as
 * JSON.stringify writes it; false when it holds a NUL (PostgreSQL cannot
 * store it). Plain ASCII is copied as it is; anything else is decoded and
 * escaped by JSON.stringify.
 */
function string(end: number): boolean {
  const start = position;
  position = end;
  let plain = true;
  for (let index = start; index < end; index += 1) {
    const byte = input[index] ?? 0;
    if (byte === 0) {
      return false;
    }
    if (byte < 0x20 || byte === QUOTE || byte === 0x5c || byte >= 0x80) {
      plain = false;
    }
  }
  if (!plain) {
    return text(JSON.stringify(utf8.decode(input.subarray(start, end))));
  }
  if (written + end - start + 2 > MAX_DEVICE_DATA_BYTES) {
    return false;
  }
  output[written++] = QUOTE;
  written += input.copy(output, written, start, end);
  output[written++] = QUOTE;
  return true;
}

/** Writes `json` (as UTF-8); false past MAX_DEVICE_DATA_BYTES. */
function text(json: string): boolean {
  const length = Buffer.byteLength(json);
  if (written + length > MAX_DEVICE_DATA_BYTES) {
    return false;
  }
  ascii &&= length === json.length;
  written += output.write(json, written, 'utf8');
  return true;
}

/** Writes one ASCII byte; false past MAX_DEVICE_DATA_BYTES. */
function put(byte: number): boolean {
  if (written >= MAX_DEVICE_DATA_BYTES) {
    return false;
  }
  output[written++] = byte;
  return true;
}

/** A varint of at most 10 bytes as its low 32 bits (unsigned), or -1. */
function varint(): number {
  let result = 0;
  for (let shift = 0; shift < 70; shift += 7) {
    if (position >= input.length) {
      return -1;
    }
    const byte = input[position++] ?? 0;
    if (shift < 32) {
      result |= (byte & 0x7f) << shift;
    }
    if (byte < 0x80) {
      return result >>> 0;
    }
  }
  return -1;
}

/** Reads a length prefix; returns where the field ends, or -1 when it passes `end`. */
function lengthEnd(end: number): number {
  const length = varint();
  return length < 0 || position + length > end ? -1 : position + length;
}
