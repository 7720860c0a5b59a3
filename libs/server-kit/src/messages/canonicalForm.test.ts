import { vitalsV1 } from '@clinical/contracts';
import { describe, expect, it } from 'vitest';
import { canonicalRequestBytes, withMapEntriesInKeyOrder } from './canonicalForm.js';

// Protobuf wire format, written out by hand so that the byte order is the test's, not an encoder's.
const varint = (value: number): number[] => (value < 128 ? [value] : [(value & 0x7f) | 0x80, ...varint(value >>> 7)]);
const delimited = (field: number, body: number[]) => [(field << 3) | 2, ...varint(body.length), ...body];
const text = (field: number, value: string) => delimited(field, [...Buffer.from(value)]);
const double = (field: number, value: number) => {
  const bytes = Buffer.alloc(8);
  bytes.writeDoubleLE(value);
  return [(field << 3) | 1, ...bytes];
};
/** A google.protobuf.Struct entry: key (1) and Value (2); Value: number_value 2, string_value 3, struct_value 5. */
const entry = (key: string, value: number[]) => delimited(1, [...text(1, key), ...delimited(2, value)]);
const numberValue = (value: number) => double(2, value);
const stringValue = (value: string) => text(3, value);
const structValue = (...entries: number[][]) => delimited(5, entries.flat());

/** RecordVitalsRequest { reading (1): VitalSigns { patient_id (2), heart_rate (7), device_data (9) }, request_id (2) }. */
function recordVitalsBytes(deviceDataEntries: number[][], requestId: string): Uint8Array {
  const reading = [...text(2, '7b0c5d4e-1f2a-4b3c-8d9e-0a1b2c3d4e5f'), 56, 70, ...delimited(9, deviceDataEntries.flat())];
  return Uint8Array.from([...delimited(1, reading), ...text(2, requestId)]);
}

describe('the canonical form of a request', () => {
  const model = entry('model', stringValue('W-200'));
  const firmware = entry('firmware', structValue(entry('major', numberValue(4)), entry('minor', numberValue(2))));
  const firmwareReordered = entry('firmware', structValue(entry('minor', numberValue(2)), entry('major', numberValue(4))));

  it('is the same for map entries in any wire order, nested ones included, and ignores the request_id', () => {
    const inOrder = vitalsV1.RecordVitalsRequest.decode(recordVitalsBytes([model, firmware], 'a'));
    const reordered = vitalsV1.RecordVitalsRequest.decode(recordVitalsBytes([firmwareReordered, model], 'b'));
    // Decoding keeps the wire order, so a plain re-encoding differs.
    expect(Object.keys(reordered.reading!.deviceData!)).toEqual(['firmware', 'model']);
    expect(Buffer.from(vitalsV1.RecordVitalsRequest.encode({ ...reordered, requestId: 'a' }).finish())).not.toEqual(
      Buffer.from(vitalsV1.RecordVitalsRequest.encode(inOrder).finish()),
    );
    expect(Buffer.from(canonicalRequestBytes(vitalsV1.RecordVitalsRequest, reordered))).toEqual(
      Buffer.from(canonicalRequestBytes(vitalsV1.RecordVitalsRequest, inOrder)),
    );
  });

  it('differs when the content does', () => {
    const first = vitalsV1.RecordVitalsRequest.decode(recordVitalsBytes([model, firmware], 'a'));
    const otherValue = vitalsV1.RecordVitalsRequest.decode(
      recordVitalsBytes([model, entry('firmware', structValue(entry('major', numberValue(4)), entry('minor', numberValue(3))))], 'a'),
    );
    const otherKey = vitalsV1.RecordVitalsRequest.decode(recordVitalsBytes([model, entry('firmwar', stringValue('x'))], 'a'));
    const canonical = (request: vitalsV1.RecordVitalsRequest) => Buffer.from(canonicalRequestBytes(vitalsV1.RecordVitalsRequest, request));
    expect(canonical(otherValue)).not.toEqual(canonical(first));
    expect(canonical(otherKey)).not.toEqual(canonical(first));
  });

  it('sorts maps inside lists, and leaves dates, bytes and list order as they are', () => {
    const at = new Date('2025-01-02T03:04:05Z');
    const bytes = Uint8Array.from([3, 1, 2]);
    const sorted = withMapEntriesInKeyOrder({ z: [{ b: 1, a: 2 }, 3], at, bytes, a: [2, 1] });
    expect(Object.keys(sorted)).toEqual(['a', 'at', 'bytes', 'z']);
    expect(Object.keys(sorted.z[0] as object)).toEqual(['a', 'b']);
    expect(sorted.a).toEqual([2, 1]);
    expect(sorted.at).toBe(at);
    expect(sorted.bytes).toBe(bytes);
  });
});
