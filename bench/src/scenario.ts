import type { BenchEnvironment } from './benchEnvironment.js';
import type { ScenarioReport } from './report.js';

export interface RunSettings {
  readonly concurrency: number;
  readonly durationMs: number;
  readonly warmupMs: number;
}

/** One benchmark: runs against a fresh environment and reports itself beside its baseline. */
export type Scenario = (environment: BenchEnvironment, settings: RunSettings) => Promise<ScenarioReport | ScenarioReport[]>;
