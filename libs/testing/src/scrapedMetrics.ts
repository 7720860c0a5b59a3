import { startMetrics, type MetricsHandle } from '@clinical/telemetry';

/** One sample of a Prometheus text exposition: `name{labels} value`. */
export interface MetricSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Label values as the exposition format escapes them (\\, \", \n). */
function unescapeLabel(value: string): string {
  return value.replace(/\\(.)/g, (_, character: string) => (character === 'n' ? '\n' : character));
}

/** Parses the samples of a Prometheus text exposition (comments skipped). */
export function parsePrometheusText(text: string): MetricSample[] {
  const samples: MetricSample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) {
      continue;
    }
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line);
    if (!match) {
      throw new Error(`not a sample line: ${line}`);
    }
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[label[1]!] = unescapeLabel(label[2]!);
    }
    const raw = match[3]!;
    samples.push({ name: match[1]!, labels, value: raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw) });
  }
  return samples;
}

/** A Prometheus endpoint of this test process, and what it serves. */
export interface TestMetrics {
  readonly handle: MetricsHandle;
  /** http://127.0.0.1:<port>/metrics */
  readonly url: string;
  /** GETs the endpoint: the exposition text and its samples. */
  scrape(): Promise<{ readonly text: string; readonly samples: MetricSample[] }>;
  stop(): Promise<void>;
}

/**
 * Starts metrics in this test process as a service would with METRICS_PORT=0
 * (and `env`'s other variables), on 127.0.0.1. Call it before starting the
 * services under test: their instruments are made when they start.
 */
export async function startTestMetrics(env: Record<string, string> = {}): Promise<TestMetrics> {
  const handle = startMetrics({ serviceName: 'test', env: { METRICS_PORT: '0', METRICS_HOST: '127.0.0.1', ...env } });
  if (!handle) {
    throw new Error('metrics did not start');
  }
  await handle.ready;
  const endpoint = handle.endpoint();
  if (!endpoint) {
    throw new Error('no Prometheus endpoint');
  }
  const url = `http://127.0.0.1:${endpoint.port}${endpoint.path}`;
  return {
    handle,
    url,
    async scrape() {
      const response = await fetch(url);
      if (!response.ok) {
        throw new Error(`GET ${url}: ${response.status}`);
      }
      const text = await response.text();
      return { text, samples: parsePrometheusText(text) };
    },
    stop: () => handle.shutdown(),
  };
}

/**
 * The samples named `name` whose labels include `labels`. Prometheus
 * exposition names: dots become underscores, counters end in `_total`,
 * histograms show as `_bucket`, `_sum` and `_count`.
 */
export function samplesOf(samples: readonly MetricSample[], name: string, labels: Record<string, string> = {}): MetricSample[] {
  return samples.filter(
    (sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  );
}
