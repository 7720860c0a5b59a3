import { readFileSync } from 'node:fs';
import { parsePrometheusText, type MetricSample } from '@clinical/testing';
import type { ServiceProcess } from './stack.js';

/** A service's Prometheus samples (METRICS_PORT), or none while it does not answer. */
export async function scrapeMetrics(service: ServiceProcess): Promise<MetricSample[]> {
  try {
    const response = await fetch(`http://127.0.0.1:${service.metricsPort}/metrics`, { signal: AbortSignal.timeout(5_000) });
    return parsePrometheusText(await response.text());
  } catch {
    return [];
  }
}

/** The sum of the samples named `name` whose labels include `labels`. */
export function sumOf(samples: readonly MetricSample[], name: string, labels: Readonly<Record<string, string>> = {}): number {
  return samples
    .filter((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
    .reduce((sum, sample) => sum + sample.value, 0);
}

/** A process's resident memory in MiB, from /proc (0 once it is gone). */
export function residentMiB(pid: number | undefined): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** A process's CPU time (user + system) in seconds, from /proc (0 once it is gone). */
export function cpuSeconds(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command; in clock ticks (100 per second).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}
