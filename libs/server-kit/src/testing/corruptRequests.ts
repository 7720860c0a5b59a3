import * as grpc from '@grpc/grpc-js';
import { seededRandom } from '@clinical/testing';
import { callWithBytes } from './wireOrder.js';

/** Statuses no request may cause: each means the server failed, not the caller. */
export const SERVER_FAULTS: ReadonlySet<grpc.status> = new Set([
  grpc.status.INTERNAL,
  grpc.status.UNKNOWN,
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.DATA_LOSS,
  grpc.status.UNIMPLEMENTED,
]);

const varint = (value: number): number[] => {
  const bytes: number[] = [];
  let rest = value;
  while (rest > 0x7f) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return bytes;
};

/**
 * Request bytes that no schema-aware client would send, from `seed`: random
 * bytes; fields 1 to 12 of every wire type with odd contents (empty, huge,
 * non-UTF-8, UUID-like, negative and out-of-range numbers, nested garbage,
 * lengths that run past the end); and such messages with bytes flipped.
 */
export function corruptRequests(seed: number, count: number): Uint8Array[] {
  const random = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const bytesOf = (length: number) => Array.from({ length }, () => Math.floor(random() * 256));
  const text = () =>
    pick([
      [],
      [...Buffer.from('00000000-0000-4000-8000-000000000000')],
      [...Buffer.from('x'.repeat(1 + Math.floor(random() * 3_000)))],
      [0xc3, 0x28, 0xff],
      bytesOf(Math.floor(random() * 40)),
    ]);
  const field = (): number[] => {
    const number = 1 + Math.floor(random() * 12);
    switch (pick(['varint', 'len', 'fixed64', 'fixed32', 'truncated'] as const)) {
      case 'varint':
        return [(number << 3) | 0, ...pick([varint(0), varint(2 ** 31), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], varint(7)])];
      case 'len': {
        const body = random() < 0.3 ? [...field(), ...field()] : text();
        return [(number << 3) | 2, ...varint(body.length), ...body];
      }
      case 'fixed64':
        return [(number << 3) | 1, ...bytesOf(8)];
      case 'fixed32':
        return [(number << 3) | 5, ...bytesOf(4)];
      case 'truncated':
        return [(number << 3) | 2, ...varint(1_000), ...bytesOf(3)];
    }
  };
  return Array.from({ length: count }, () => {
    if (random() < 0.2) {
      return Uint8Array.from(bytesOf(Math.floor(random() * 64)));
    }
    const message = Array.from({ length: 1 + Math.floor(random() * 4) }, field).flat();
    if (random() < 0.3 && message.length > 0) {
      message[Math.floor(random() * message.length)] = Math.floor(random() * 256);
    }
    return Uint8Array.from(message);
  });
}

/** Sends `requests` (raw bytes) to one method, a client stream as one or two messages; returns each status. */
export async function sendRawRequests(
  address: string,
  method: { readonly path: string; readonly requestStream: boolean },
  requests: readonly Uint8Array[],
  metadata: grpc.Metadata,
): Promise<grpc.status[]> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    const statuses: grpc.status[] = [];
    for (const [index, request] of requests.entries()) {
      const messages = method.requestStream && index % 2 === 1 ? [request, requests[index - 1]!] : [request];
      statuses.push((await callWithBytes(client, method, messages, metadata)).code);
    }
    return statuses;
  } finally {
    client.close();
  }
}
