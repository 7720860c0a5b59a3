import type { TsProtoServiceDefinition } from 'nice-grpc';

const ENCODING = Symbol('encoding');

interface ResponseType {
  encode(message: unknown, writer?: unknown): { finish(): Uint8Array };
  fromPartial?(object: unknown): unknown;
}

/**
 * A response together with its encoding, for a handler that already holds the
 * bytes (a cache hit): they are sent as they are, instead of the response being
 * copied (nice-grpc's fromPartial) and encoded again. `bytes` must be exactly
 * what the response type's encode would write for `response`.
 */
export function withEncoding<Response extends object>(response: Response, bytes: Uint8Array): Response {
  return Object.assign(response, { [ENCODING]: bytes });
}

const encodingOf = (value: unknown): Uint8Array | undefined =>
  typeof value === 'object' && value !== null ? (value as { [ENCODING]?: Uint8Array })[ENCODING] : undefined;

/** The definition with response types that send a `withEncoding` response's bytes as they are. */
export function withEncodedResponses<Definition extends TsProtoServiceDefinition>(definition: Definition): Definition {
  const methods = Object.fromEntries(
    Object.entries(definition.methods).map(([key, method]) => {
      const responseType = method.responseType as ResponseType;
      const fromPartial = responseType.fromPartial;
      const sendsEncoded: ResponseType = {
        ...responseType,
        encode: (message, writer) => {
          const bytes = encodingOf(message);
          return bytes ? { finish: () => bytes } : responseType.encode(message, writer);
        },
        ...(fromPartial && {
          fromPartial: (object: unknown) => (encodingOf(object) ? object : fromPartial(object)),
        }),
      };
      return [key, { ...method, responseType: sendsEncoded }];
    }),
  );
  return { ...definition, methods } as Definition;
}
