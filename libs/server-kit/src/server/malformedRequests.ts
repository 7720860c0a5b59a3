import { InvalidArgumentError } from '@clinical/errors';
import type { ServerMiddleware, TsProtoServiceDefinition } from 'nice-grpc';

const MALFORMED = Symbol('malformed request');

interface MessageType {
  decode(input: Uint8Array): unknown;
}

const malformed = () =>
  new InvalidArgumentError({ field: 'request', description: 'is not a valid protobuf encoding of the request message' });

function isMalformed(request: unknown): boolean {
  return typeof request === 'object' && request !== null && MALFORMED in request;
}

/**
 * The definition with request decoders that never throw. grpc-js answers a
 * message it cannot decode with INTERNAL, but bytes a caller sent are the
 * caller's fault: an undecodable message becomes a marker that
 * `malformedRequestMiddleware` turns into INVALID_ARGUMENT.
 */
export function withTolerantDecoding<Definition extends TsProtoServiceDefinition>(definition: Definition): Definition {
  const methods = Object.fromEntries(
    Object.entries(definition.methods).map(([key, method]) => {
      const requestType = method.requestType as MessageType;
      const tolerantType = {
        ...requestType,
        decode: (input: Uint8Array) => {
          try {
            return requestType.decode(input);
          } catch {
            return { [MALFORMED]: true };
          }
        },
      };
      return [key, { ...method, requestType: tolerantType }];
    }),
  );
  return { ...definition, methods } as Definition;
}

/** Refuses a malformed request, or a malformed message anywhere in a client stream, with INVALID_ARGUMENT. */
export const malformedRequestMiddleware: ServerMiddleware = async function* refuseMalformed(call, context) {
  if (!call.requestStream) {
    if (isMalformed(call.request)) {
      throw malformed();
    }
    return yield* call.next(call.request, context);
  }
  const messages = call.request as AsyncIterable<unknown>;
  const checked = (async function* checkEach() {
    for await (const message of messages) {
      if (isMalformed(message)) {
        throw malformed();
      }
      yield message;
    }
  })();
  return yield* call.next(checked as never, context);
};
