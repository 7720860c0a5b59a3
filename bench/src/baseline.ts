import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runLoad, type LoadOptions, type LoadResult } from './loadGenerator.js';
import { startEchoProcess, unaryCaller } from './processes.js';

/** A statement the baseline server runs on each call before it answers. */
export interface BaselineQuery {
  readonly url: string;
  readonly text: string;
  readonly values: readonly unknown[];
}

/**
 * Measures the bare grpc-js baseline with the same client work as a
 * scenario: the same request encoding, the same response bytes decoded by the
 * same decoder, at the same load (closed or open loop), from its own server
 * process. With `query`, the server runs that statement through raw pg on
 * each call first (bare grpc-js + raw SQL).
 */
export async function measureGrpcBaseline<Request, Response>(
  request: Request,
  encode: (request: Request) => Uint8Array,
  decode: (bytes: Uint8Array) => Response,
  responseBytes: Uint8Array,
  settings: Omit<LoadOptions, 'call'>,
  query?: BaselineQuery,
): Promise<LoadResult> {
  const directory = mkdtempSync(join(tmpdir(), 'bench-'));
  const file = join(directory, 'response.bin');
  writeFileSync(file, responseBytes);
  const queryFile = query ? join(directory, 'query.json') : undefined;
  if (queryFile) {
    writeFileSync(queryFile, JSON.stringify(query));
  }
  const echo = await startEchoProcess(file, queryFile);
  const caller = unaryCaller(echo.address, '/bench.Echo/Echo', encode, decode);
  try {
    return await runLoad({ ...settings, call: () => caller.call(request).then(() => undefined) });
  } finally {
    caller.close();
    await echo.stop();
  }
}
