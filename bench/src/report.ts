import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { LoadResult } from './loadGenerator.js';

export interface ScenarioReport {
  readonly scenario: string;
  /** What the baseline is ('bare grpc-js' unless said otherwise: 'raw COPY', 'raw SQL'...). */
  readonly baselineName?: string;
  readonly baseline: LoadResult;
  readonly measured: LoadResult;
  readonly concurrency: number;
  /** False when a baseline sample is another unit of work than a measured one (a COPY statement against a stream). */
  readonly latenciesComparable?: boolean;
  /** Set for an open-loop run: the calls started per second (concurrency then does not apply). */
  readonly ratePerSecond?: number;
  /** Peak resident memory of the service process during the run, MiB. */
  readonly servicePeakRssMiB: number;
  /**
   * CPU time per call of the service's process and of the baseline's, read
   * from /proc while measuring (exact whatever pace the load generator kept),
   * and what the load processes spent. The ratio is the headline figure.
   */
  readonly cpu?: {
    readonly serviceUsPerCall: number;
    readonly baselineUsPerCall: number;
    /** Cores the load processes used against the service and against the baseline. */
    readonly loadGeneratorCores: { readonly service: number; readonly baseline: number };
    /** A load process was at least 90% busy: the client may have set the pace (throughput, not CPU per call, is then in doubt). */
    readonly loadGeneratorSaturated: boolean;
  };
  /** Extra figures a scenario reports (e.g. rows per second). */
  readonly extra?: Record<string, number | string>;
}

const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));
const fixed = (value: number, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : '-');

/** Prints the run side by side with its baseline, and writes it as JSON under bench/results. */
export function report(reports: readonly ScenarioReport[]): void {
  // An open loop runs both sides at one rate: its throughput ratio is 1 by construction, its p99 ratio is the result.
  // CPU per call is the headline where measured: it does not depend on how fast the load generator is.
  const header = ['scenario', 'cpu µs/call', 'cpu ratio', 'rps', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'errors', 'rps ratio', 'p99 ratio', 'rss MiB', 'load cores'];
  const rows = reports.flatMap((entry) => [
    [`${entry.scenario} (baseline: ${entry.baselineName ?? 'bare grpc-js'})`, fixed(entry.cpu?.baselineUsPerCall ?? Number.NaN, 0), entry.cpu ? '1.00' : '-', fixed(entry.baseline.rps, 0), fixed(entry.baseline.p50Ms), fixed(entry.baseline.p90Ms), fixed(entry.baseline.p99Ms), fixed(entry.baseline.maxMs), String(entry.baseline.errors), '1.00', '1.00', '', fixed(entry.cpu?.loadGeneratorCores.baseline ?? Number.NaN)],
    [entry.scenario, fixed(entry.cpu?.serviceUsPerCall ?? Number.NaN, 0), entry.cpu ? fixed(entry.cpu.serviceUsPerCall / entry.cpu.baselineUsPerCall) : '-', fixed(entry.measured.rps, 0), fixed(entry.measured.p50Ms), fixed(entry.measured.p90Ms), fixed(entry.measured.p99Ms), fixed(entry.measured.maxMs), String(entry.measured.errors), fixed(entry.measured.rps / entry.baseline.rps), entry.latenciesComparable === false ? '-' : fixed(entry.measured.p99Ms / entry.baseline.p99Ms), fixed(entry.servicePeakRssMiB, 0), fixed(entry.cpu?.loadGeneratorCores.service ?? Number.NaN)],
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: readonly string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ');
  process.stdout.write(`${line(header)}\n${widths.map((width) => '-'.repeat(width)).join('  ')}\n`);
  for (const row of rows) {
    process.stdout.write(`${line(row)}\n`);
  }
  for (const entry of reports) {
    if (entry.cpu?.loadGeneratorSaturated) {
      process.stdout.write(`${entry.scenario}: a load process was saturated; its throughput is the client's limit, its CPU per call still the server's\n`);
    }
    if (entry.extra) {
      process.stdout.write(`${entry.scenario}: ${JSON.stringify(entry.extra)}\n`);
    }
    if (entry.measured.firstError) {
      process.stdout.write(`${entry.scenario}: first error: ${entry.measured.firstError}\n`);
    }
  }
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = `${RESULTS_DIR}${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(
    file,
    `${JSON.stringify({ node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, reports }, null, 2)}\n`,
  );
  process.stdout.write(`results: ${file}\n`);
}
