import { runLoad, type LoadOptions, type LoadResult } from './loadGenerator.js';
import { startFloorProcess, unaryCaller } from './processes.js';

const PATH = '/bench.Echo/Echo';

/**
 * Measures the bare grpc-js baseline with the same client work as a
 * scenario: the same request encoding, the same response bytes decoded by the
 * same decoder, at the same load (closed or open loop), from its own server
 * process (the floor server).
 */
export async function measureGrpcBaseline<Request, Response>(
  request: Request,
  encode: (request: Request) => Uint8Array,
  decode: (bytes: Uint8Array) => Response,
  responseBytes: Uint8Array,
  settings: Omit<LoadOptions, 'call'>,
): Promise<LoadResult> {
  const echo = await startFloorProcess({
    path: PATH,
    response: Buffer.from(responseBytes).toString('base64'),
  });
  const caller = unaryCaller(echo.address, PATH, encode, decode);
  try {
    return await runLoad({ ...settings, call: () => caller.call(request).then(() => undefined) });
  } finally {
    caller.close();
    await echo.stop();
  }
}
