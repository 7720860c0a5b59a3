import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { metrics, type Meter } from '@opentelemetry/api';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader, type IMetricReader } from '@opentelemetry/sdk-metrics';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

/** Where the Prometheus scrape endpoint listens. */
export interface MetricsEndpoint {
  readonly host: string;
  /** The bound port (the one asked for, or the one the system chose for METRICS_PORT=0). */
  readonly port: number;
  /** Always `/metrics`. */
  readonly path: string;
}

export interface MetricsHandle {
  /** Resolves once the Prometheus endpoint (if any) listens; rejects when it cannot (port in use). */
  readonly ready: Promise<void>;
  /** The scrape endpoint, once `ready` resolved; undefined without one. */
  endpoint(): MetricsEndpoint | undefined;
  /** Exports what the OTLP reader holds now (tests; shutdown does it too). */
  forceFlush(): Promise<void>;
  /** Exports what is left, closes the endpoint and unregisters the global meter provider. */
  shutdown(): Promise<void>;
}

/** The metric readers an environment asks for. */
export interface MetricsSettings {
  readonly otlp: boolean;
  /** The Prometheus endpoint, or undefined for none. */
  readonly prometheus?: { readonly host: string; readonly port: number };
  readonly exportIntervalMs: number;
  readonly exportTimeoutMs: number;
}

function positiveInteger(env: NodeJS.ProcessEnv, variable: string, fallback: number): number {
  const text = env[variable]?.trim();
  if (!text) {
    return fallback;
  }
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${variable}: "${text}" is not a positive integer (milliseconds)`);
  }
  return value;
}

/**
 * Reads OTEL_METRICS_EXPORTER (`none` by default; `otlp`, `prometheus`, or a
 * comma list), METRICS_PORT (the Prometheus endpoint's port: setting it alone
 * implies `prometheus`; 0 lets the system choose), METRICS_HOST (0.0.0.0),
 * OTEL_METRIC_EXPORT_INTERVAL and OTEL_METRIC_EXPORT_TIMEOUT (ms, for OTLP).
 * Returns undefined when no metric is to be exported.
 * @throws Error naming the variable when one is malformed.
 */
export function metricsSettingsFromEnv(env: NodeJS.ProcessEnv): MetricsSettings | undefined {
  const names = new Set(
    (env.OTEL_METRICS_EXPORTER ?? 'none')
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter((name) => name !== '' && name !== 'none'),
  );
  for (const name of names) {
    if (name !== 'otlp' && name !== 'prometheus') {
      throw new Error(`OTEL_METRICS_EXPORTER: unsupported exporter "${name}" (use none, otlp or prometheus)`);
    }
  }
  const portText = env.METRICS_PORT?.trim();
  let port: number | undefined;
  if (portText) {
    port = Number(portText);
    if (!/^\d+$/.test(portText) || port > 65_535) {
      throw new Error(`METRICS_PORT: "${portText}" is not a port number (0-65535)`);
    }
    names.add('prometheus');
  }
  if (names.size === 0) {
    return undefined;
  }
  const host = env.METRICS_HOST?.trim() || '0.0.0.0';
  return {
    otlp: names.has('otlp'),
    // The exporter's registered default port when OTEL_METRICS_EXPORTER=prometheus names no port.
    prometheus: names.has('prometheus') ? { host, port: port ?? 9464 } : undefined,
    exportIntervalMs: positiveInteger(env, 'OTEL_METRIC_EXPORT_INTERVAL', 60_000),
    exportTimeoutMs: positiveInteger(env, 'OTEL_METRIC_EXPORT_TIMEOUT', 30_000),
  };
}

/** The scrape endpoint: GET /metrics answered by the exporter, anything else 404. */
function servePrometheus(exporter: PrometheusExporter, host: string, port: number): { server: Server; listening: Promise<AddressInfo> } {
  const server = createServer((request, response) => {
    const path = request.url?.split('?')[0];
    if (path === '/metrics' && (request.method === 'GET' || request.method === 'HEAD')) {
      exporter.getMetricsRequestHandler(request, response);
      return;
    }
    response.statusCode = 404;
    response.end();
  });
  // A metrics listener alone never keeps the process up.
  server.unref();
  const listening = new Promise<AddressInfo>((resolve, reject) => {
    server.once('error', (error) => reject(new Error(`METRICS_PORT: cannot listen on ${host}:${port}: ${error.message}`)));
    server.listen(port, host, () => resolve(server.address() as AddressInfo));
  });
  return { server, listening };
}

/**
 * The process's metrics, kept on globalThis: the `--import` register bundle
 * starts them and the service's bundle (its own copy of this module) reads
 * and stops them.
 */
const ACTIVE = Symbol.for('@clinical/telemetry/metrics');
const holder = globalThis as { [ACTIVE]?: MetricsHandle };

export interface MetricsOptions {
  /** service.name of the resource; OTEL_SERVICE_NAME wins when set. */
  readonly serviceName: string;
  /** Environment to read the settings from (metricsSettingsFromEnv). */
  readonly env?: NodeJS.ProcessEnv;
  /** More readers (tests). */
  readonly readers?: readonly IMetricReader[];
}

/**
 * Starts the metrics SDK when the environment asks for it (see
 * metricsSettingsFromEnv): a MeterProvider with an OTLP reader (periodic; the
 * exporter reads the standard OTEL_EXPORTER_OTLP_* variables of the process)
 * and/or a Prometheus reader with its scrape endpoint, registered as the
 * global meter provider, so that instruments made from `@opentelemetry/api`
 * after this record. Without it the API's instruments do nothing and cost
 * nothing. Returns undefined when nothing is to be exported.
 * @throws Error naming a malformed variable, or when metrics were already started in this process.
 */
export function startMetrics(options: MetricsOptions): MetricsHandle | undefined {
  const env = options.env ?? process.env;
  const settings = metricsSettingsFromEnv(env);
  if (!settings && !options.readers?.length) {
    return undefined;
  }
  if (holder[ACTIVE]) {
    throw new Error('metrics were already started in this process');
  }
  const readers: IMetricReader[] = [...(options.readers ?? [])];
  if (settings?.otlp) {
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter(),
        exportIntervalMillis: settings.exportIntervalMs,
        exportTimeoutMillis: Math.min(settings.exportTimeoutMs, settings.exportIntervalMs),
      }),
    );
  }
  let scrape: { server: Server; listening: Promise<AddressInfo> } | undefined;
  let endpoint: MetricsEndpoint | undefined;
  if (settings?.prometheus) {
    const exporter = new PrometheusExporter({ preventServerStart: true });
    readers.push(exporter);
    scrape = servePrometheus(exporter, settings.prometheus.host, settings.prometheus.port);
  }
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME ?? options.serviceName }),
    readers,
  });
  metrics.setGlobalMeterProvider(provider);
  const ready = (scrape?.listening ?? Promise.resolve(undefined)).then((address) => {
    endpoint = address && settings?.prometheus ? { host: settings.prometheus.host, port: address.port, path: '/metrics' } : undefined;
  });
  // The caller awaits `ready`; this only keeps a failed listen from being reported twice.
  ready.catch(() => {});
  let stopping: Promise<void> | undefined;
  const handle: MetricsHandle = {
    ready,
    endpoint: () => endpoint,
    forceFlush: () => provider.forceFlush(),
    shutdown() {
      stopping ??= (async () => {
        try {
          await provider.shutdown();
        } finally {
          if (scrape) {
            const { server } = scrape;
            await new Promise<void>((resolve) => {
              server.close(() => resolve());
              server.closeAllConnections();
            });
          }
          metrics.disable();
          if (holder[ACTIVE] === handle) {
            delete holder[ACTIVE];
          }
        }
      })();
      return stopping;
    },
  };
  holder[ACTIVE] = handle;
  return handle;
}

/** The Prometheus scrape endpoint of this process, if it serves one (and it listens). */
export function metricsEndpoint(): MetricsEndpoint | undefined {
  return holder[ACTIVE]?.endpoint();
}

/**
 * The meter of the services' own instruments. Take it when the instruments
 * are made (at service start), never at import: instruments made before
 * metrics started stay no-ops.
 */
export function serviceMeter(): Meter {
  return metrics.getMeter('clinical');
}

/** Whether metrics were started in this process (per-call measurements are skipped when not). */
export function metricsStarted(): boolean {
  return holder[ACTIVE] !== undefined;
}
