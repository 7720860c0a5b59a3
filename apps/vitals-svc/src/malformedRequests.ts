import { InvalidArgumentError } from '@clinical/errors';
import type { TsProtoServiceDefinition } from 'nice-grpc';

const MALFORMED = Symbol('malformed request');

interface MessageType {
  decode(input: Uint8Array): unknown;
}

const malformed = () =>
  new InvalidArgumentError({ field: 'request', description: 'is not a valid protobuf encoding of the request message' });

/**
 * The definition with request decoders that never throw: grpc-js answers a
 * message it cannot decode with INTERNAL, but bytes a caller sent are the
 * caller's fault. An undecodable message becomes a marker that the handlers
 * (wrapped by `refuseMalformed`) turn into INVALID_ARGUMENT.
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

function isMalformed(request: unknown): boolean {
  return typeof request === 'object' && request !== null && MALFORMED in request;
}

/** Wraps a unary handler: a malformed request is INVALID_ARGUMENT. */
export function refuseMalformed<Request, Context, Response>(
  handler: (request: Request, context: Context) => Promise<Response>,
): (request: Request, context: Context) => Promise<Response> {
  return async (request, context) => {
    if (isMalformed(request)) {
      throw malformed();
    }
    return handler(request, context);
  };
}

/** Wraps a client-streaming handler: a malformed message anywhere in the stream is INVALID_ARGUMENT. */
export function refuseMalformedMessages<Request, Context, Response>(
  handler: (requests: AsyncIterable<Request>, context: Context) => Promise<Response>,
): (requests: AsyncIterable<Request>, context: Context) => Promise<Response> {
  return (requests, context) =>
    handler(
      (async function* checked() {
        for await (const request of requests) {
          if (isMalformed(request)) {
            throw malformed();
          }
          yield request;
        }
      })(),
      context,
    );
}
