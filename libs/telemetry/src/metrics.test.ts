import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { metrics } from '@opentelemetry/api';
import { afterEach, describe, expect, it } from 'vitest';
import { metricsEndpoint, metricsSettingsFromEnv, metricsStarted, startMetrics, type MetricsHandle } from './metrics.js';

describe('metricsSettingsFromEnv', () => {
  it('exports nothing by default', () => {
    expect(metricsSettingsFromEnv({})).toBeUndefined();
    expect(metricsSettingsFromEnv({ OTEL_METRICS_EXPORTER: 'none' })).toBeUndefined();
  });

  it('serves Prometheus on METRICS_PORT alone, on every interface unless METRICS_HOST says', () => {
    expect(metricsSettingsFromEnv({ METRICS_PORT: '9464' })).toMatchObject({ otlp: false, prometheus: { host: '0.0.0.0', port: 9464 } });
    expect(metricsSettingsFromEnv({ METRICS_PORT: '0', METRICS_HOST: '127.0.0.1' })?.prometheus).toEqual({ host: '127.0.0.1', port: 0 });
    expect(metricsSettingsFromEnv({ OTEL_METRICS_EXPORTER: 'prometheus' })?.prometheus?.port).toBe(9464);
  });

  it('takes a comma list, with the OTLP export interval', () => {
    expect(metricsSettingsFromEnv({ OTEL_METRICS_EXPORTER: 'otlp, prometheus', METRICS_PORT: '9000', OTEL_METRIC_EXPORT_INTERVAL: '15000' })).toEqual({
      otlp: true,
      prometheus: { host: '0.0.0.0', port: 9000 },
      exportIntervalMs: 15_000,
      exportTimeoutMs: 30_000,
    });
  });

  it('names the variable that is wrong', () => {
    expect(() => metricsSettingsFromEnv({ OTEL_METRICS_EXPORTER: 'statsd' })).toThrow(/OTEL_METRICS_EXPORTER: unsupported exporter "statsd"/);
    expect(() => metricsSettingsFromEnv({ METRICS_PORT: '70000' })).toThrow(/METRICS_PORT/);
    expect(() => metricsSettingsFromEnv({ METRICS_PORT: 'http' })).toThrow(/METRICS_PORT/);
    expect(() => metricsSettingsFromEnv({ OTEL_METRICS_EXPORTER: 'otlp', OTEL_METRIC_EXPORT_INTERVAL: '-1' })).toThrow(/OTEL_METRIC_EXPORT_INTERVAL/);
  });
});

describe('startMetrics', () => {
  let handle: MetricsHandle | undefined;
  afterEach(async () => {
    await handle?.shutdown();
    handle = undefined;
  });

  it('starts nothing when nothing is asked for', () => {
    expect(startMetrics({ serviceName: 'unit', env: {} })).toBeUndefined();
    expect(metricsStarted()).toBe(false);
  });

  it('serves /metrics on the bound port, and stops serving at shutdown', async () => {
    handle = startMetrics({ serviceName: 'unit', env: { METRICS_PORT: '0', METRICS_HOST: '127.0.0.1' } });
    await handle!.ready;
    const endpoint = metricsEndpoint()!;
    expect(endpoint.port).toBeGreaterThan(0);
    expect(metricsStarted()).toBe(true);
    metrics.getMeter('unit').createCounter('unit.calls').add(2);
    const text = await (await fetch(`http://127.0.0.1:${endpoint.port}/metrics`)).text();
    expect(text).toContain('target_info{service_name="unit"} 1');
    expect(text).toMatch(/^unit_calls_total\{.*\} 2$/m);
    expect(() => startMetrics({ serviceName: 'unit', env: { METRICS_PORT: '0' } })).toThrow(/already started/);

    await handle!.shutdown();
    handle = undefined;
    expect(metricsStarted()).toBe(false);
    await expect(fetch(`http://127.0.0.1:${endpoint.port}/metrics`)).rejects.toThrow();
  });

  it('fails to become ready, naming METRICS_PORT, when the port is taken', async () => {
    const occupant = createServer();
    await new Promise<void>((resolve) => occupant.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = occupant.address() as AddressInfo;
      handle = startMetrics({ serviceName: 'unit', env: { METRICS_PORT: String(port), METRICS_HOST: '127.0.0.1' } });
      await expect(handle!.ready).rejects.toThrow(new RegExp(`METRICS_PORT: cannot listen on 127.0.0.1:${port}`));
    } finally {
      await new Promise((resolve) => occupant.close(resolve));
    }
  });
});
