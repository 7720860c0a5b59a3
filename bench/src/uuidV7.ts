import { randomFillSync } from 'node:crypto';

// Time-ordered ids like vitals-svc's (UUID version 7), their random bits drawn from a pool refilled in bulk.
const idPool = Buffer.alloc(16 * 1024);
let idOffset = idPool.length;

/** Writes a UUID v7 for `nowMs` into `target` at `at` (16 bytes). */
export function writeUuidV7(target: Buffer, at: number, nowMs: number): void {
  if (idOffset + 10 > idPool.length) {
    randomFillSync(idPool);
    idOffset = 0;
  }
  target.writeUIntBE(nowMs, at, 6);
  idPool.copy(target, at + 6, idOffset, idOffset + 10);
  idOffset += 10;
  target.writeUInt8(0x70 | (target.readUInt8(at + 6) & 0x0f), at + 6);
  target.writeUInt8(0x80 | (target.readUInt8(at + 8) & 0x3f), at + 8);
}

/** A UUID v7 for `nowMs`, as text. */
export function uuidV7(nowMs: number): string {
  const bytes = Buffer.allocUnsafe(16);
  writeUuidV7(bytes, 0, nowMs);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
