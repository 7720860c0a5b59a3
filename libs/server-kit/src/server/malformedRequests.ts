import { InvalidArgumentError } from '@clinical/errors';
import type { TsProtoServiceDefinition } from 'nice-grpc';

const MALFORMED = Symbol('malformed request');

interface MessageType {
  decode(input: Uint8Array): unknown;
  encode(message: unknown): { finish(): Uint8Array };
}

const NOT_PROTOBUF = 'is not a valid protobuf encoding of the request message';
// The generated decoders stop at 100 nested messages: about 33 levels of a JSON document (Struct).
const TOO_DEEP = 'nests messages deeper than 100 levels (a JSON document: about 33)';

/** Why a request could not be decoded, when it could not. */
function malformedReason(request: unknown): string | undefined {
  return typeof request === 'object' && request !== null && MALFORMED in request ? (request[MALFORMED] as string) : undefined;
}

// The generated decoders store JSON (Struct) keys as plain object properties: a key
// "__proto__" sets the object's prototype instead, and the key is silently lost. On the
// wire such a key is a map entry's field 1 of 9 bytes.
const PROTO_KEY = Buffer.concat([Uint8Array.from([0x0a, 0x09]), Buffer.from('__proto__')]);
const PROTO_KEY_LOST = 'holds a JSON key "__proto__", which is not supported';

/**
 * Decodes a request, or says why it cannot. A request that carries a map key
 * "__proto__" is encoded again: if that comes out shorter, decoding dropped
 * the key, and the request is refused rather than stored without it.
 */
function decodeOrExplain(requestType: MessageType, input: Uint8Array): unknown {
  let decoded: unknown;
  try {
    decoded = requestType.decode(input);
  } catch (error) {
    return { [MALFORMED]: error instanceof Error && /recursion limit/.test(error.message) ? TOO_DEEP : NOT_PROTOBUF };
  }
  if (Buffer.from(input.buffer, input.byteOffset, input.byteLength).includes(PROTO_KEY)) {
    if (requestType.encode(decoded).finish().byteLength < input.byteLength) {
      return { [MALFORMED]: PROTO_KEY_LOST };
    }
  }
  return decoded;
}

const malformed = (reason: string) => new InvalidArgumentError({ field: 'request', description: reason });

/**
 * The definition with request decoders that never throw. grpc-js answers a
 * message it cannot decode with INTERNAL, but bytes a caller sent are the
 * caller's fault: an undecodable message (or one decoding would change,
 * decodeOrExplain) becomes a marker that `refusingMalformedRequests` turns
 * into INVALID_ARGUMENT.
 */
export function withTolerantDecoding<Definition extends TsProtoServiceDefinition>(definition: Definition): Definition {
  const methods = Object.fromEntries(
    Object.entries(definition.methods).map(([key, method]) => {
      const requestType = method.requestType as MessageType;
      const tolerantType = {
        ...requestType,
        decode: (input: Uint8Array) => decodeOrExplain(requestType, input),
      };
      return [key, { ...method, requestType: tolerantType }];
    }),
  );
  return { ...definition, methods } as Definition;
}

type Handler = (request: unknown, context: unknown) => unknown;

/**
 * The handlers of a tolerantly decoded definition, refusing a malformed
 * request, or a malformed message anywhere in a client stream, with
 * INVALID_ARGUMENT. A wrapper around each handler rather than a middleware:
 * a middleware layer costs every call of every method several promises.
 */
export function refusingMalformedRequests<Implementation extends object>(
  definition: TsProtoServiceDefinition,
  implementation: Implementation,
): Implementation {
  const handlers = implementation as Record<string, Handler>;
  return Object.fromEntries(
    Object.entries(definition.methods).map(([key, method]) => {
      const handler = (handlers[key] as Handler).bind(implementation);
      if (!method.requestStream) {
        return [
          key,
          (request: unknown, context: unknown) => {
            const reason = malformedReason(request);
            if (reason) {
              throw malformed(reason);
            }
            return handler(request, context);
          },
        ];
      }
      return [
        key,
        (messages: AsyncIterable<unknown>, context: unknown) =>
          handler(
            (async function* checkEach() {
              for await (const message of messages) {
                const reason = malformedReason(message);
                if (reason) {
                  throw malformed(reason);
                }
                yield message;
              }
            })(),
            context,
          ),
      ];
    }),
  ) as Implementation;
}
