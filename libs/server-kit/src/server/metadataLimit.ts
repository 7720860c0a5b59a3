import * as grpc from '@grpc/grpc-js';

/** A call's metadata size as HTTP/2 counts a header list (RFC 9113, 6.5.2): name, value and 32 bytes per entry. */
export function metadataBytes(metadata: grpc.Metadata): number {
  let bytes = 0;
  for (const [key, values] of Object.entries(metadata.toHttp2Headers())) {
    for (const value of Array.isArray(values) ? values : [values]) {
      bytes += Buffer.byteLength(key) + Buffer.byteLength(String(value)) + 32;
    }
  }
  return bytes;
}

/**
 * Refuses a call whose metadata takes more than `maxBytes` with
 * RESOURCE_EXHAUSTED naming the limit, before any handler or middleware sees
 * it. The listener tells clients a header list limit too, but HTTP/2 applies
 * it only once the client has acknowledged it: a call sent before then is
 * stopped here.
 */
export function metadataLimitInterceptor(maxBytes: number): grpc.ServerInterceptor {
  return (_method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, passOn) {
            const bytes = metadataBytes(metadata);
            if (bytes > maxBytes) {
              call.sendStatus({
                code: grpc.status.RESOURCE_EXHAUSTED,
                details: `request metadata takes ${bytes} bytes, more than the ${maxBytes} allowed`,
                metadata: new grpc.Metadata(),
              });
              return;
            }
            passOn(metadata);
          },
        });
      },
    });
}
