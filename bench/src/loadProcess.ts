/**
 * A load generator process, forked by `runLoadProcesses` so that the load
 * does not share an event loop (or a CPU counter) with the bench or the
 * server it measures. It calls one unary method with pre-encoded requests and
 * does not decode the answers: per call it spends as little as a client can.
 * It tells its parent when measuring starts, then sends its samples.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { runLoadSamples } from './loadGenerator.js';

/** What one load process is asked to do. */
export interface LoadJob {
  readonly address: string;
  /** `/pkg.Service/Method` */
  readonly path: string;
  readonly authorization?: string;
  /** Pre-encoded requests, each preceded by its length (uint32 BE). */
  readonly requestsFile: string;
  /** Call k of this process sends request (firstIndex + k * stride) modulo the count. */
  readonly firstIndex: number;
  readonly stride: number;
  /** Client channels the calls are spread over (round robin). */
  readonly connections: number;
  readonly concurrency: number;
  readonly ratePerSecond?: number;
  readonly durationMs: number;
  readonly warmupMs: number;
}

/** Messages a load process sends its parent. */
export type LoadProcessMessage =
  | { readonly type: 'measuring' }
  | { readonly type: 'done'; readonly latenciesMs: number[]; readonly errors: number; readonly firstError?: string; readonly seconds: number };

const CALL_DEADLINE_MS = 60_000;

function readRequests(file: string): Buffer[] {
  const bytes = readFileSync(file);
  const requests: Buffer[] = [];
  for (let offset = 0; offset < bytes.length; ) {
    const length = bytes.readUInt32BE(offset);
    requests.push(bytes.subarray(offset + 4, offset + 4 + length));
    offset += 4 + length;
  }
  return requests;
}

async function run(job: LoadJob): Promise<void> {
  const requests = readRequests(job.requestsFile);
  const clients = Array.from(
    { length: job.connections },
    // Distinct channel options so that grpc-js opens one connection per client instead of sharing one.
    (_, index) => new grpc.Client(job.address, grpc.credentials.createInsecure(), { 'grpc.bench_channel': index }),
  );
  const metadata = new grpc.Metadata();
  if (job.authorization) {
    metadata.set('authorization', job.authorization);
  }
  const identity = (bytes: Buffer) => bytes;
  const samples = await runLoadSamples({
    concurrency: job.concurrency,
    ratePerSecond: job.ratePerSecond,
    durationMs: job.durationMs,
    warmupMs: job.warmupMs,
    onMeasuring: () => process.send?.({ type: 'measuring' } satisfies LoadProcessMessage),
    call: (index) =>
      new Promise<void>((resolve, reject) => {
        const request = requests[(job.firstIndex + index * job.stride) % requests.length]!;
        // A deadline, so that a server that stops answering fails calls instead of hanging the bench.
        clients[index % clients.length]!.makeUnaryRequest(job.path, identity, identity, request, metadata, { deadline: Date.now() + CALL_DEADLINE_MS }, (error) =>
          error ? reject(error) : resolve(),
        );
      }),
  });
  for (const client of clients) {
    client.close();
  }
  const message: LoadProcessMessage = {
    type: 'done',
    latenciesMs: [...samples.latenciesMs],
    errors: samples.errors,
    firstError: samples.firstError,
    seconds: samples.seconds,
  };
  // It stays alive (the IPC channel holds it) until the parent has read its CPU time and ends it.
  process.send?.(message);
}

// A listener keeps the IPC channel (and so the process) alive after the job, until the parent disconnects or ends it.
process.on('disconnect', () => process.exit(0));
process.once('message', (job: LoadJob) => {
  run(job).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
});
