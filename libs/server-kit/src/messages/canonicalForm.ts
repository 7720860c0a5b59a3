/** A generated message type's encode/decode (ts-proto's MessageFns). */
export interface MessageFns<Message> {
  encode(message: Message): { finish(): Uint8Array };
  decode(input: Uint8Array): Message;
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => {
  if (value === null || typeof value !== 'object') {
    return false;
  }
  const prototype = Object.getPrototypeOf(value) as unknown;
  return prototype === Object.prototype || prototype === null;
};

/**
 * A copy of a decoded message (or of any value in one) whose maps, the
 * entries of google.protobuf.Struct and of proto `map<>` fields alike, are
 * in key order. A decoded map keeps the order its entries had on the wire,
 * and that order is unspecified: Go randomises it on every marshal, Python
 * reorders it when a message is copied. ts-proto encodes a map in its
 * object's order, so re-encoding the copy gives one byte sequence for every
 * wire order of the same message. Messages, Dates and bytes keep their
 * fields; only plain objects (maps, and messages, whose field order the
 * encoder fixes anyway) are rebuilt.
 */
export function withMapEntriesInKeyOrder<T>(value: T): T {
  if (Array.isArray(value)) {
    return value.map((element: unknown) => withMapEntriesInKeyOrder(element)) as T;
  }
  if (!isPlainObject(value)) {
    return value;
  }
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    sorted[key] = withMapEntriesInKeyOrder(value[key]);
  }
  return sorted as T;
}

/**
 * What a retry of a request is compared by: the request without its
 * request_id, encoded with its maps in key order, so that two encodings of
 * the same request (fields or map entries in another order on the wire)
 * compare equal and a request with other content does not. For requests
 * without maps these are the bytes a plain re-encoding gives.
 */
export function canonicalRequestBytes<Request extends { requestId: string }>(type: MessageFns<Request>, request: Request): Uint8Array {
  return type.encode(withMapEntriesInKeyOrder({ ...request, requestId: '' })).finish();
}
