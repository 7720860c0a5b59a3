import * as grpc from '@grpc/grpc-js';

/** grpc.health.v1 Check over a raw channel: SERVING or not (any failure is not). */
export function healthStatus(address: string, timeoutMs = 2_000): Promise<'SERVING' | 'NOT_SERVING' | 'DOWN'> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      () => Buffer.alloc(0),
      (bytes: Buffer) => bytes,
      {},
      { deadline: Date.now() + timeoutMs },
      (error, response) => {
        client.close();
        // HealthCheckResponse { status = 1 }: bytes 08 01 (SERVING), 08 02 (NOT_SERVING).
        resolve(error ? 'DOWN' : response?.[1] === 1 ? 'SERVING' : 'NOT_SERVING');
      },
    );
  });
}
