/** Closed-loop load: `concurrency` callers, each starting its next call when the last one ends. */
export interface LoadOptions {
  readonly concurrency: number;
  readonly durationMs: number;
  /** Calls made before measuring starts (connections, JIT, caches). */
  readonly warmupMs?: number;
  /** One call; `index` counts calls across all callers. */
  readonly call: (index: number) => Promise<void>;
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

function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) {
    return Number.NaN;
  }
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

async function drive(options: LoadOptions, durationMs: number, counter: { next: number }, record: boolean) {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const deadline = performance.now() + durationMs;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (performance.now() < deadline) {
        const index = counter.next;
        counter.next += 1;
        const begin = performance.now();
        try {
          await options.call(index);
          if (record) {
            latencies.push(performance.now() - begin);
          }
        } catch (error) {
          errors += 1;
          firstError ??= (error as Error).message;
        }
      }
    }),
  );
  return { latencies, errors, firstError, seconds: (performance.now() - started) / 1_000 };
}

/** Runs the load and reports throughput and latency percentiles of the measured part. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const counter = { next: 0 };
  if (options.warmupMs) {
    await drive(options, options.warmupMs, counter, false);
  }
  const { latencies, errors, firstError, seconds } = await drive(options, options.durationMs, counter, true);
  const sorted = Float64Array.from(latencies).sort();
  return {
    calls: latencies.length,
    errors,
    firstError,
    seconds,
    rps: latencies.length / seconds,
    p50Ms: percentile(sorted, 0.5),
    p90Ms: percentile(sorted, 0.9),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
  };
}
