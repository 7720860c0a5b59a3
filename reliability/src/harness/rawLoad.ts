import * as grpc from '@grpc/grpc-js';

/** What one call of an open-loop run ended with. */
export interface OpenLoopCall {
  readonly code: grpc.status;
  readonly latencyMs: number;
  /** UNAVAILABLE and RESOURCE_EXHAUSTED: whether google.rpc.RetryInfo came in the status details. */
  readonly retryInfo: boolean;
}

export interface OpenLoopResult {
  readonly calls: readonly OpenLoopCall[];
  /** Calls started per second, as asked and as the generator managed. */
  readonly targetRate: number;
  readonly offeredRate: number;
  /** Calls not started because this many were already outstanding (the generator's own bound). */
  readonly skipped: number;
  /** The first message seen with each failing status, for the report. */
  readonly messages: Readonly<Record<string, string>>;
}

function metadataOf(entries: Record<string, string>): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(entries)) {
    metadata.set(key, value);
  }
  return metadata;
}

/** One unary call of pre-encoded request bytes, its response left as bytes. */
function callOnce(
  client: grpc.Client,
  method: string,
  request: Buffer,
  metadata: grpc.Metadata,
  deadlineMs: number,
  done: (error: grpc.ServiceError | null) => void,
): void {
  client.makeUnaryRequest(method, (bytes: Buffer) => bytes, (bytes: Buffer) => bytes, request, metadata, { deadline: Date.now() + deadlineMs }, (error) =>
    done(error),
  );
}

const RETRY_INFO_TYPE = Buffer.from('type.googleapis.com/google.rpc.RetryInfo');

/**
 * Calls `method` at `rate` calls/s for `durationMs`, whatever the answers
 * (open loop: a slow server does not slow the offered load), with
 * `connections` channels and pre-encoded request bytes so that the generator
 * costs as little as it can. At most `maxOutstanding` calls are left
 * unanswered at once; past that a call is counted as skipped, not queued.
 */
export async function runOpenLoop(options: {
  readonly address: string;
  readonly method: string;
  readonly request: Uint8Array;
  readonly metadata: Record<string, string>;
  readonly rate: number;
  readonly durationMs: number;
  readonly deadlineMs: number;
  readonly connections?: number;
  readonly maxOutstanding?: number;
}): Promise<OpenLoopResult> {
  const clients = Array.from(
    { length: options.connections ?? 4 },
    // A distinct option per client keeps grpc-js from sharing one subchannel between them.
    (_, index) => new grpc.Client(options.address, grpc.credentials.createInsecure(), { 'grpc.reliability_channel': index }),
  );
  const metadata = metadataOf(options.metadata);
  const request = Buffer.from(options.request);
  const calls: OpenLoopCall[] = [];
  const messages: Record<string, string> = {};
  const maxOutstanding = options.maxOutstanding ?? 20_000;
  let outstanding = 0;
  let started = 0;
  let skipped = 0;
  let allStarted: () => void;
  const done = new Promise<void>((resolve) => (allStarted = resolve));
  const drained: Promise<void>[] = [];

  const call = () => {
    if (outstanding >= maxOutstanding) {
      skipped += 1;
      return;
    }
    outstanding += 1;
    started += 1;
    const client = clients[started % clients.length] as grpc.Client;
    const begin = performance.now();
    drained.push(
      new Promise<void>((resolve) => {
        callOnce(client, options.method, request, metadata, options.deadlineMs, (error) => {
          outstanding -= 1;
          if (error) {
            messages[grpc.status[error.code]] ??= error.details;
          }
          const details = error?.metadata?.get('grpc-status-details-bin')[0];
          calls.push({
            code: error ? error.code : grpc.status.OK,
            latencyMs: performance.now() - begin,
            retryInfo: Buffer.isBuffer(details) && details.includes(RETRY_INFO_TYPE),
          });
          resolve();
        });
      }),
    );
  };

  // Ticks of a millisecond or more: each starts the calls that fall due by then.
  const beginAt = performance.now();
  let due = 0;
  const timer = setInterval(() => {
    const elapsed = performance.now() - beginAt;
    if (elapsed >= options.durationMs) {
      clearInterval(timer);
      allStarted();
      return;
    }
    const target = Math.floor((elapsed / 1_000) * options.rate);
    for (; due < target; due += 1) {
      call();
    }
  }, 1);
  await done;
  const elapsedMs = performance.now() - beginAt;
  await Promise.all(drained);
  for (const client of clients) {
    client.close();
  }
  return { calls, targetRate: options.rate, offeredRate: (started / elapsedMs) * 1_000, skipped, messages };
}

/**
 * `concurrency` callers, each starting its next call when the last is
 * answered, for `durationMs`: the rate the service sustains, and its latencies.
 */
export async function runClosedLoop(options: {
  readonly address: string;
  readonly method: string;
  readonly request: Uint8Array;
  readonly metadata: Record<string, string>;
  readonly concurrency: number;
  readonly durationMs: number;
  readonly deadlineMs: number;
}): Promise<{ readonly rate: number; readonly calls: readonly OpenLoopCall[] }> {
  const client = new grpc.Client(options.address, grpc.credentials.createInsecure());
  const metadata = metadataOf(options.metadata);
  const request = Buffer.from(options.request);
  const calls: OpenLoopCall[] = [];
  const endAt = performance.now() + options.durationMs;
  const beginAt = performance.now();
  const caller = async () => {
    while (performance.now() < endAt) {
      const begin = performance.now();
      const code = await new Promise<grpc.status>((resolve) =>
        callOnce(client, options.method, request, metadata, options.deadlineMs, (error) => resolve(error ? error.code : grpc.status.OK)),
      );
      calls.push({ code, latencyMs: performance.now() - begin, retryInfo: false });
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, caller));
  client.close();
  return { rate: (calls.length / (performance.now() - beginAt)) * 1_000, calls };
}

/** The q-quantile (0..1) of `values`, 0 when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) {
    return 0;
  }
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}
