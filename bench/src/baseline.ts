import type { FloorValue } from './floorServer.js';
import { runLoad, type LoadOptions, type LoadResult } from './loadGenerator.js';
import { startFloorProcess, unaryCaller } from './processes.js';

/** A statement the baseline server runs on each call before it answers. */
export interface BaselineQuery {
  readonly url: string;
  readonly text: string;
  /** Sent as JSON to the server: plain values only. */
  readonly values: readonly unknown[];
}

const PATH = '/bench.Echo/Echo';

/**
 * Measures the bare grpc-js baseline with the same client work as a
 * scenario: the same request encoding, the same response bytes decoded by the
 * same decoder, at the same load (closed or open loop), from its own server
 * process (the floor server). With `query`, the server runs that statement
 * through raw pg on each call first (bare grpc-js + raw SQL).
 */
export async function measureGrpcBaseline<Request, Response>(
  request: Request,
  encode: (request: Request) => Uint8Array,
  decode: (bytes: Uint8Array) => Response,
  responseBytes: Uint8Array,
  settings: Omit<LoadOptions, 'call'>,
  query?: BaselineQuery,
): Promise<LoadResult> {
  const echo = await startFloorProcess({
    path: PATH,
    response: Buffer.from(responseBytes).toString('base64'),
    ...(query ? { databaseUrl: query.url, statements: [{ text: query.text, values: query.values as FloorValue[] }] } : {}),
  });
  const caller = unaryCaller(echo.address, PATH, encode, decode);
  try {
    return await runLoad({ ...settings, call: () => caller.call(request).then(() => undefined) });
  } finally {
    caller.close();
    await echo.stop();
  }
}
