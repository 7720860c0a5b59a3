import * as grpc from '@grpc/grpc-js';
import { expect } from 'vitest';
import type { MessageFns } from '../messages/canonicalForm.js';

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype;

/**
 * A copy of `value` with the entries of every map (Struct fields, proto maps:
 * plain objects) in reverse order. ts-proto encodes a map in its object's
 * order, so the copy encodes to the same message in another wire order, as
 * Go or Python clients send it.
 */
export function withMapEntriesReversed<T>(value: T): T {
  if (Array.isArray(value)) {
    return value.map((element: unknown) => withMapEntriesReversed(element)) as T;
  }
  if (!isPlainObject(value)) {
    return value;
  }
  const reversed: Record<string, unknown> = {};
  for (const key of Object.keys(value).reverse()) {
    reversed[key] = withMapEntriesReversed(value[key]);
  }
  return reversed as T;
}

/** Reads a varint at `offset`; returns its value and the offset after it. */
function readVarint(bytes: Uint8Array, offset: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let at = offset; ; at += 1) {
    const byte = bytes[at];
    if (byte === undefined) {
      throw new Error('truncated varint');
    }
    value += (byte & 0x7f) * scale;
    scale *= 128;
    if ((byte & 0x80) === 0) {
      return [value, at + 1];
    }
  }
}

/**
 * An encoded message's top-level fields, rearranged byte by byte: sorted by
 * field number, highest first. Elements of one repeated field keep their
 * order, so the result is the same message, on the wire in another order.
 */
export function withFieldsReordered(bytes: Uint8Array): Uint8Array {
  const fields: { number: number; bytes: Uint8Array }[] = [];
  for (let offset = 0; offset < bytes.length; ) {
    const [tag, afterTag] = readVarint(bytes, offset);
    let end: number;
    switch (tag & 7) {
      case 0:
        end = readVarint(bytes, afterTag)[1];
        break;
      case 1:
        end = afterTag + 8;
        break;
      case 2: {
        const [length, afterLength] = readVarint(bytes, afterTag);
        end = afterLength + length;
        break;
      }
      case 5:
        end = afterTag + 4;
        break;
      default:
        throw new Error(`wire type ${tag & 7} is not used by these contracts`);
    }
    fields.push({ number: Math.floor(tag / 8), bytes: bytes.subarray(offset, end) });
    offset = end;
  }
  const reordered = [...fields].sort((a, b) => b.number - a.number);
  return Buffer.concat(reordered.map((field) => field.bytes));
}

/** `message` encoded in another wire order: maps reversed, then top-level fields rearranged. */
export function inAnotherWireOrder<Message>(type: MessageFns<Message>, message: Message): Uint8Array {
  return withFieldsReordered(type.encode(withMapEntriesReversed(message)).finish());
}

/** How a call with raw request bytes ended. */
export interface RawCallOutcome {
  readonly code: grpc.status;
  readonly details: string;
  /** The response's bytes, when the call succeeded. */
  readonly response?: Buffer;
}

/** Makes one call on `client` with request bytes as given: a unary call, or a client stream of `messages`. */
export function callWithBytes(
  client: grpc.Client,
  method: { readonly path: string; readonly requestStream: boolean },
  messages: readonly Uint8Array[],
  metadata: grpc.Metadata,
): Promise<RawCallOutcome> {
  const passthrough = (bytes: Uint8Array) => Buffer.from(bytes);
  const options = { deadline: Date.now() + 30_000 };
  return new Promise<RawCallOutcome>((resolve) => {
    const done = (error: grpc.ServiceError | null, response?: Buffer) =>
      resolve(error ? { code: error.code, details: error.details } : { code: grpc.status.OK, details: '', response });
    if (method.requestStream) {
      const call = client.makeClientStreamRequest(method.path, passthrough, (bytes: Buffer) => bytes, metadata, options, done);
      for (const message of messages) {
        call.write(message);
      }
      call.end();
    } else {
      if (messages.length !== 1) {
        throw new Error('a unary call takes exactly one message');
      }
      client.makeUnaryRequest(method.path, passthrough, (bytes: Buffer) => bytes, messages[0]!, metadata, options, done);
    }
  });
}

/** An idempotent method's request, for `expectRetriesIndependentOfWireOrder`. */
export interface RetryCase<Request> {
  readonly address: string;
  readonly token: string;
  /** The generated service definition and one of its methods. */
  readonly service: { readonly fullName: string };
  readonly method: { readonly name: string; readonly requestType: MessageFns<Request>; readonly requestStream: boolean };
  /** The messages of the request (one for a unary method), request_id set; maps of two or more entries. */
  readonly messages: readonly Request[];
  /** Messages with the same request_id and other content. */
  readonly changed: readonly Request[];
}

/**
 * Sends a request; then the same request in another wire order with the same
 * request_id, which must be answered with the first response, byte for byte;
 * then the same request_id with other content, which must be refused.
 */
export async function expectRetriesIndependentOfWireOrder<Request>(retry: RetryCase<Request>): Promise<void> {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${retry.token}`);
  const { requestType } = retry.method;
  const method = { path: `/${retry.service.fullName}/${retry.method.name}`, requestStream: retry.method.requestStream };
  const encoded = retry.messages.map((message) => requestType.encode(message).finish());
  const reordered = retry.messages.map((message) => inAnotherWireOrder(requestType, message));
  reordered.forEach((bytes, index) => {
    expect(Buffer.compare(Buffer.from(bytes), Buffer.from(encoded[index]!)), `message ${index} is in another wire order`).not.toBe(0);
    expect(requestType.decode(bytes), `message ${index} is the same message`).toEqual(requestType.decode(encoded[index]!));
  });

  const client = new grpc.Client(retry.address, grpc.credentials.createInsecure());
  try {
    const first = await callWithBytes(client, method, encoded, metadata);
    expect({ code: grpc.status[first.code], details: first.details }).toEqual({ code: 'OK', details: '' });
    const replayed = await callWithBytes(client, method, reordered, metadata);
    expect({ code: grpc.status[replayed.code], details: replayed.details }).toEqual({ code: 'OK', details: '' });
    expect(replayed.response?.toString('hex'), 'the first response, replayed').toBe(first.response?.toString('hex'));

    const changed = retry.changed.map((message) => requestType.encode(message).finish());
    const refused = await callWithBytes(client, method, changed, metadata);
    expect(grpc.status[refused.code]).toBe('INVALID_ARGUMENT');
    expect(refused.details).toMatch(/request_id/);
  } finally {
    client.close();
  }
}
