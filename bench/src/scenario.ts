import type { BenchEnvironment } from './benchEnvironment.js';
import type { ScenarioReport } from './report.js';

export interface RunSettings {
  readonly concurrency: number;
  /** The open-loop rate as a fraction of the closed-loop throughput measured before it. */
  readonly openLoopLoad: number;
  readonly durationMs: number;
  readonly warmupMs: number;
}

/** One benchmark: runs against a fresh environment and reports itself beside its baseline. */
export type Scenario = (environment: BenchEnvironment, settings: RunSettings) => Promise<ScenarioReport | ScenarioReport[]>;

/** A load a scenario is measured at, with the label its report rows carry. */
export interface LoadShape extends RunSettings {
  readonly label: string;
  readonly ratePerSecond?: number;
}

/**
 * Measures a scenario with a latency target at each load: one caller at a
 * time (with `oneCaller`), the run's concurrency in a closed loop (its
 * throughput; at many calls in flight its latency is mostly queueing), then
 * an open loop at `openLoopLoad` of the highest throughput the closed loops
 * reached, or at `ratePerSecond` (the latency at that load). `measure`
 * returns the shape's reports; the first one's `measured` is the service's
 * own result.
 */
export async function measureAtEachLoad(
  settings: RunSettings,
  options: {
    readonly oneCaller?: boolean;
    /** The open loop's rate, to compare with another measurement at the same rate. */
    readonly ratePerSecond?: number;
  },
  measure: (shape: LoadShape) => Promise<ScenarioReport[]>,
): Promise<ScenarioReport[]> {
  const reports: ScenarioReport[] = [];
  let throughput = 0;
  for (const concurrency of new Set([...(options.oneCaller ? [1] : []), settings.concurrency])) {
    const measured = await measure({ ...settings, concurrency, label: `c=${concurrency}` });
    throughput = Math.max(throughput, measured[0]!.measured.rps);
    reports.push(...measured);
  }
  const ratePerSecond = options.ratePerSecond ?? Math.max(1, Math.round(throughput * settings.openLoopLoad));
  const openLoop = await measure({ ...settings, ratePerSecond, label: `${ratePerSecond}/s` });
  reports.push(...openLoop.map((report) => ({ ...report, ratePerSecond })));
  return reports;
}
