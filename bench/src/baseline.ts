import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runLoad, type LoadOptions, type LoadResult } from './loadGenerator.js';
import { startEchoProcess, unaryCaller } from './processes.js';

/**
 * Measures the bare grpc-js baseline with the same client work as a
 * scenario: the same request encoding, the same response bytes decoded by the
 * same decoder, at the same load (closed or open loop), from its own server
 * process.
 */
export async function measureGrpcBaseline<Request, Response>(
  request: Request,
  encode: (request: Request) => Uint8Array,
  decode: (bytes: Uint8Array) => Response,
  responseBytes: Uint8Array,
  settings: Omit<LoadOptions, 'call'>,
): Promise<LoadResult> {
  const file = join(mkdtempSync(join(tmpdir(), 'bench-')), 'response.bin');
  writeFileSync(file, responseBytes);
  const echo = await startEchoProcess(file);
  const caller = unaryCaller(echo.address, '/bench.Echo/Echo', encode, decode);
  try {
    return await runLoad({ ...settings, call: () => caller.call(request).then(() => undefined) });
  } finally {
    caller.close();
    await echo.stop();
  }
}
