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

