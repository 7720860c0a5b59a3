/**
 * Two kinds of load:
 * - closed loop: `concurrency` callers, each starting its next call when the
 *   last one ends. It finds the throughput; at many calls in flight its
 *   latency is mostly queueing (Little's law: in flight / throughput).
 * - open loop (`ratePerSecond`): calls start on a fixed schedule whatever the
 *   answers do, and each latency is counted from the call's scheduled start,
 *   so a stalled client or server cannot hide its own backlog (no
 *   coordinated omission). It shows the latency at a given load.
 */
export interface LoadOptions {
  readonly concurrency: number;
  /** Open loop at this many calls per second; `concurrency` is then ignored. */
  readonly ratePerSecond?: number;
  readonly durationMs: number;
  /** Calls made before measuring starts (connections, JIT, caches). */
  readonly warmupMs?: number;
  /** One call; `index` counts calls across all callers. */
  readonly call: (index: number) => Promise<void>;
  /** Told when the warm-up ended and measuring starts (to read CPU counters then). */
  readonly onMeasuring?: () => void;
}

export interface LoadResult {
  readonly calls: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly seconds: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

interface Samples {
  readonly latencies: number[];
  errors: number;
  firstError?: string;
}

function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) {
    return Number.NaN;
  }
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

/** Makes call `index`, counting its latency from `startedAt` when recording. */
async function timedCall(options: LoadOptions, index: number, startedAt: number, samples: Samples | undefined): Promise<void> {
  try {
    await options.call(index);
    samples?.latencies.push(performance.now() - startedAt);
  } catch (error) {
    if (samples) {
      samples.errors += 1;
      samples.firstError ??= (error as Error).message;
    }
  }
}

async function driveClosedLoop(options: LoadOptions, durationMs: number, counter: { next: number }, samples?: Samples) {
  const deadline = performance.now() + durationMs;
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (performance.now() < deadline) {
        const index = counter.next;
        counter.next += 1;
        await timedCall(options, index, performance.now(), samples);
      }
    }),
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function driveOpenLoop(rate: number, options: LoadOptions, durationMs: number, counter: { next: number }, samples?: Samples) {
  const interval = 1_000 / rate;
  const start = performance.now();
  const due = Math.floor(durationMs / interval);
  let outstanding = 0;
  let drained = () => {};
  const finished = () => {
    outstanding -= 1;
    if (outstanding === 0) {
      drained();
    }
  };
  for (let sent = 0; sent < due; ) {
    // Timers fire late by up to a millisecond or more; every call whose time has come starts now,
    // timed from when it should have started.
    const now = performance.now();
    while (sent < due && start + sent * interval <= now) {
      outstanding += 1;
      void timedCall(options, counter.next, start + sent * interval, samples).then(finished);
      counter.next += 1;
      sent += 1;
    }
    await sleep(Math.max(0, start + sent * interval - performance.now()));
  }
  if (outstanding > 0) {
    await new Promise<void>((resolve) => {
      drained = resolve;
    });
  }
}

/** What a measured run saw: each call's latency, failures, and how long it lasted. */
export interface LoadSamples {
  readonly latenciesMs: Float64Array;
  readonly errors: number;
  readonly firstError?: string;
  readonly seconds: number;
}

/** Summarises samples (of one run, or merged from several load processes run side by side). */
export function summarize(runs: readonly LoadSamples[]): LoadResult {
  const sorted = Float64Array.from(runs.flatMap((run) => [...run.latenciesMs])).sort();
  const seconds = Math.max(...runs.map((run) => run.seconds));
  return {
    calls: sorted.length,
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
    firstError: runs.find((run) => run.firstError)?.firstError,
    seconds,
    rps: sorted.length / seconds,
    p50Ms: percentile(sorted, 0.5),
    p90Ms: percentile(sorted, 0.9),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
  };
}

/** Runs the load and reports throughput and latency percentiles of the measured part. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  return summarize([await runLoadSamples(options)]);
}

/** Runs the load and returns the measured part's samples. */
export async function runLoadSamples(options: LoadOptions): Promise<LoadSamples> {
  const counter = { next: 0 };
  const drive = (durationMs: number, samples?: Samples) =>
    options.ratePerSecond
      ? driveOpenLoop(options.ratePerSecond, options, durationMs, counter, samples)
      : driveClosedLoop(options, durationMs, counter, samples);
  if (options.warmupMs) {
    await drive(options.warmupMs);
  }
  options.onMeasuring?.();
  const samples: Samples = { latencies: [], errors: 0 };
  const started = performance.now();
  await drive(options.durationMs, samples);
  return {
    latenciesMs: Float64Array.from(samples.latencies),
    errors: samples.errors,
    firstError: samples.firstError,
    seconds: (performance.now() - started) / 1_000,
  };
}
