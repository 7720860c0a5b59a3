import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { analyticsV1 } from '@clinical/contracts';
import { InvalidArgumentError } from '@clinical/errors';
import { samplesOf, startTestMetrics, type MetricSample, type TestMetrics } from '@clinical/testing';
import { Status, type ClientError } from 'nice-grpc';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineService } from '../server/defineService.js';
import { notYetServed } from '../server/notYetServed.js';
import type { ServiceModule } from '../server/startService.js';
import { startTestService, type TestService } from '../testing/startTestService.js';
import { cacheNameOf } from './serviceMetrics.js';

/**
 * The metrics a service exports, as Prometheus scrapes them and as OTLP
 * receives them: each series named in the README, with its labels, after
 * calls that should move it.
 */

const GET_SITE_ANALYTICS = 'clinical.analytics.v1.AnalyticsService/GetSiteAnalytics';
/** Values of requests and callers that must never show up in a metric. */
const PROTOCOL = 'PROTO-7f3a91';
const CALLER = 'metrics-caller';

/** Calls to site 'held' wait inside the handler until the test releases them. */
const held = {
  inside: 0,
  release: () => {},
  entered: () => {},
  gate: Promise.resolve(),
  close() {
    this.gate = new Promise<void>((resolve) => {
      this.release = resolve;
    });
  },
  /** Resolves once a held call is inside the handler. */
  whenInside(): Promise<void> {
    return this.inside > 0 ? Promise.resolve() : new Promise((resolve) => (this.entered = resolve));
  },
};

const responseCodec = {
  encode: (response: analyticsV1.GetSiteAnalyticsResponse) => analyticsV1.GetSiteAnalyticsResponse.encode(response).finish(),
  decode: (bytes: Uint8Array) => analyticsV1.GetSiteAnalyticsResponse.decode(bytes),
};

/** A service whose GetSiteAnalytics succeeds, fails, waits, or reads through the cache, as the site id says. */
const probeModule: ServiceModule = {
  name: 'analytics-svc',
  createServices: (runtime) => [
    defineService(
      analyticsV1.AnalyticsServiceDefinition,
      {
        async getSiteAnalytics(request, context) {
          switch (request.siteId) {
            case 'invalid':
              throw new InvalidArgumentError([{ field: 'site_id', description: 'is not a site' }]);
            case 'held':
              held.inside += 1;
              held.entered();
              try {
                await Promise.race([held.gate, new Promise((resolve) => context.signal.addEventListener('abort', resolve))]);
              } finally {
                held.inside -= 1;
              }
              return analyticsV1.GetSiteAnalyticsResponse.fromPartial({});
            case 'cached': {
              const cached = await runtime.cache.getOrLoad(`probe:${request.protocolId}`, responseCodec, 60, async () => ({
                value: analyticsV1.GetSiteAnalyticsResponse.fromPartial({}),
                version: 1,
              }));
              return cached ?? analyticsV1.GetSiteAnalyticsResponse.fromPartial({});
            }
            default:
              return analyticsV1.GetSiteAnalyticsResponse.fromPartial({});
          }
        },
        listSiteAnalytics: notYetServed('ListSiteAnalytics'),
        refreshAnalytics: notYetServed('RefreshAnalytics'),
        getAnalyticsFreshness: notYetServed('GetAnalyticsFreshness'),
      },
      {
        getSiteAnalytics: { roles: ['monitor'], cost: 1 },
        listSiteAnalytics: { roles: ['monitor'], cost: 1 },
        refreshAnalytics: { roles: ['admin'], cost: 1 },
        getAnalyticsFreshness: { roles: ['monitor'], cost: 1 },
      },
    ),
  ],
};

/**
 * The part of opentelemetry-proto's collector/metrics/v1 an OTLP/HTTP metrics
 * export carries that this test reads (field numbers as published; the rest
 * is skipped by the decoder): metric names, the resource, and the attributes
 * and counts of histogram points.
 */
const OTLP_METRICS_PROTO = `
syntax = "proto3";
package otlp;
message ExportMetricsServiceRequest { repeated ResourceMetrics resource_metrics = 1; }
message ResourceMetrics { Resource resource = 1; repeated ScopeMetrics scope_metrics = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeMetrics { InstrumentationScope scope = 1; repeated Metric metrics = 2; }
message InstrumentationScope { string name = 1; string version = 2; }
message Metric { string name = 1; string description = 2; string unit = 3; Histogram histogram = 9; }
message Histogram { repeated HistogramDataPoint data_points = 1; }
message HistogramDataPoint { repeated KeyValue attributes = 9; fixed64 count = 4; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue { oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; } }
`;
const ExportMetricsServiceRequest = protobuf.parse(OTLP_METRICS_PROTO).root.lookupType('otlp.ExportMetricsServiceRequest');

interface DecodedKeyValue {
  key: string;
  value?: { stringValue?: string };
}
interface DecodedExport {
  resourceMetrics: {
    resource?: { attributes: DecodedKeyValue[] };
    scopeMetrics: {
      metrics: { name: string; unit: string; histogram?: { dataPoints: { attributes: DecodedKeyValue[]; count: number }[] } }[];
    }[];
  }[];
}

/** An OTLP/HTTP receiver of metric exports: what arrived at /v1/metrics, decoded. */
async function startOtlpReceiver(): Promise<{ url: string; received: DecodedExport[]; close(): Promise<void> }> {
  const received: DecodedExport[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      if (request.url !== '/v1/metrics' || request.headers['content-type'] !== 'application/x-protobuf') {
        response.statusCode = 404;
        response.end();
        return;
      }
      const body = Buffer.concat(chunks);
      const bytes = request.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body;
      received.push(
        ExportMetricsServiceRequest.toObject(ExportMetricsServiceRequest.decode(bytes), { longs: Number, defaults: true }) as DecodedExport,
      );
      response.setHeader('content-type', 'application/x-protobuf');
      response.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1/metrics`,
    received,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
let metrics: TestMetrics;
let service: TestService;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  // The OTLP exporter reads its endpoint from the process environment when it is made.
  const previousEndpoint = process.env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT;
  process.env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT = receiver.url;
  try {
    // Prometheus on a port of the system's choosing, and OTLP exporting only when flushed.
    metrics = await startTestMetrics({ OTEL_METRICS_EXPORTER: 'otlp', OTEL_METRIC_EXPORT_INTERVAL: '3600000' });
  } finally {
    if (previousEndpoint === undefined) {
      delete process.env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT;
    } else {
      process.env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT = previousEndpoint;
    }
  }
  // One call in flight at a time; five points a window per caller.
  service = await startTestService(probeModule, { RATE_LIMIT_POINTS: '5', MAX_IN_FLIGHT_COST: '1' });
});

afterAll(async () => {
  held.release();
  await service?.stop();
  await metrics?.stop();
  await receiver?.close();
});

const client = async (sub: string) =>
  service.client(analyticsV1.AnalyticsServiceDefinition, await service.token({ sub, roles: ['monitor'], sites: '*' }));

const statusOf = (call: Promise<unknown>) =>
  call.then(
    () => Status.OK,
    (error: ClientError) => error.code,
  );

const valueOf = (samples: readonly MetricSample[], name: string, labels: Record<string, string> = {}) => {
  const found = samplesOf(samples, name, labels);
  expect(found, `${name} ${JSON.stringify(labels)}`).toHaveLength(1);
  return found[0]!.value;
};

describe('the metrics a service exports', () => {
  let scrapedWhileHeld: MetricSample[];
  let scraped: { text: string; samples: MetricSample[] };

  beforeAll(async () => {
    // OK twice and INVALID_ARGUMENT once; a cache hit (a stored entry) and a miss.
    const caller = await client(`${CALLER}-a`);
    expect(await statusOf(caller.getSiteAnalytics({ siteId: 'ok', protocolId: PROTOCOL }))).toBe(Status.OK);
    expect(await statusOf(caller.getSiteAnalytics({ siteId: 'invalid', protocolId: PROTOCOL }))).toBe(Status.INVALID_ARGUMENT);
    await service.running.runtime.cache.store(`probe:${PROTOCOL}`, responseCodec, 60, {
      value: analyticsV1.GetSiteAnalyticsResponse.fromPartial({}),
      version: 1,
    });
    expect(await statusOf(caller.getSiteAnalytics({ siteId: 'cached', protocolId: PROTOCOL }))).toBe(Status.OK);
    expect(await statusOf(caller.getSiteAnalytics({ siteId: 'cached', protocolId: `${PROTOCOL}-absent` }))).toBe(Status.OK);

    // A caller past its five points.
    const greedy = await client(`${CALLER}-b`);
    const outcomes = [];
    for (let call = 0; call < 6; call += 1) {
      outcomes.push(await statusOf(greedy.getSiteAnalytics({ siteId: 'ok', protocolId: PROTOCOL })));
    }
    expect(outcomes).toEqual([Status.OK, Status.OK, Status.OK, Status.OK, Status.OK, Status.RESOURCE_EXHAUSTED]);

    // A call held in its handler spends the in-flight budget: the next one is shed.
    held.close();
    const holding = statusOf((await client(`${CALLER}-c`)).getSiteAnalytics({ siteId: 'held', protocolId: PROTOCOL }));
    await held.whenInside();
    expect(await statusOf((await client(`${CALLER}-d`)).getSiteAnalytics({ siteId: 'ok', protocolId: PROTOCOL }))).toBe(Status.UNAVAILABLE);
    scrapedWhileHeld = (await metrics.scrape()).samples;
    held.release();
    expect(await holding).toBe(Status.OK);

    scraped = await metrics.scrape();
  });

  it('times every call in rpc.server.call.duration (seconds), by method and status', () => {
    const { samples } = scraped;
    const count = (status: string) =>
      valueOf(samples, 'rpc_server_call_duration_count', { rpc_method: GET_SITE_ANALYTICS, rpc_status_code: status, rpc_system_name: 'grpc' });
    // a: ok, 2 × cached; b: 5 ok; c: held.
    expect(count('OK')).toBe(9);
    expect(count('INVALID_ARGUMENT')).toBe(1);
    expect(count('RESOURCE_EXHAUSTED')).toBe(1);
    expect(count('UNAVAILABLE')).toBe(1);
    const buckets = samplesOf(samples, 'rpc_server_call_duration_bucket', { rpc_method: GET_SITE_ANALYTICS, rpc_status_code: 'OK' });
    expect(buckets.map((bucket) => bucket.labels.le)).toContain('+Inf');
    expect(buckets.find((bucket) => bucket.labels.le === '+Inf')?.value).toBe(9);
    expect(valueOf(samples, 'rpc_server_call_duration_sum', { rpc_method: GET_SITE_ANALYTICS, rpc_status_code: 'OK' })).toBeGreaterThan(0);
  });

  it('counts calls shed and calls refused by the rate limit, by method', () => {
    expect(valueOf(scraped.samples, 'clinical_rpc_server_shed_total', { rpc_method: GET_SITE_ANALYTICS })).toBe(1);
    expect(valueOf(scraped.samples, 'clinical_rpc_server_rate_limited_total', { rpc_method: GET_SITE_ANALYTICS })).toBe(1);
  });

  it('shows the calls in flight and their cost', () => {
    expect(valueOf(scrapedWhileHeld, 'clinical_rpc_server_in_flight')).toBe(1);
    expect(valueOf(scrapedWhileHeld, 'clinical_rpc_server_in_flight_cost')).toBe(1);
    expect(valueOf(scraped.samples, 'clinical_rpc_server_in_flight')).toBe(0);
    expect(valueOf(scraped.samples, 'clinical_rpc_server_in_flight_cost')).toBe(0);
  });

  it('counts cache lookups by cache and result, sessions included', () => {
    const { samples } = scraped;
    expect(valueOf(samples, 'clinical_cache_lookups_total', { cache_name: 'probe', cache_result: 'hit' })).toBe(1);
    expect(valueOf(samples, 'clinical_cache_lookups_total', { cache_name: 'probe', cache_result: 'miss' })).toBe(1);
    // Each caller's first call finds its session only in PostgreSQL, later ones in Redis; a shed call is never checked.
    expect(valueOf(samples, 'clinical_cache_lookups_total', { cache_name: 'session', cache_result: 'miss' })).toBe(3);
    expect(valueOf(samples, 'clinical_cache_lookups_total', { cache_name: 'session', cache_result: 'hit' })).toBe(8);
  });

  it('shows the database pool: connections used and idle, requests waiting', () => {
    const { samples } = scraped;
    const pool = { db_client_connection_pool_name: 'analytics-svc' };
    const used = valueOf(samples, 'db_client_connection_count', { ...pool, db_client_connection_state: 'used' });
    const idle = valueOf(samples, 'db_client_connection_count', { ...pool, db_client_connection_state: 'idle' });
    expect(used).toBeGreaterThanOrEqual(0);
    // The sessions were read from PostgreSQL: the pool has opened connections.
    expect(used + idle).toBeGreaterThan(0);
    expect(valueOf(samples, 'db_client_connection_pending_requests', pool)).toBeGreaterThanOrEqual(0);
  });

  it('shows the access-audit backlog, drops and failed flushes', () => {
    const { samples } = scraped;
    expect(valueOf(samples, 'clinical_access_audit_pending')).toBeGreaterThanOrEqual(0);
    expect(valueOf(samples, 'clinical_access_audit_dropped_total')).toBe(0);
    expect(valueOf(samples, 'clinical_access_audit_failed_flushes_total')).toBe(0);
  });

  it('labels with method names, status names and fixed words only: no caller, no request value', () => {
    expect(scraped.text).not.toContain(CALLER);
    expect(scraped.text).not.toContain(PROTOCOL);
    expect(cacheNameOf('patient:0b7e4f1c-2d7a-4c1e-9a57-3f1f0e6c2b11')).toBe('patient');
    expect(cacheNameOf('0b7e4f1c-2d7a-4c1e-9a57-3f1f0e6c2b11:x')).toBe('other');
    expect(cacheNameOf('C-00042:x')).toBe('other');
    expect(cacheNameOf('no-prefix')).toBe('other');
  });

  it('answers 404 off /metrics', async () => {
    expect((await fetch(metrics.url.replace('/metrics', '/other'))).status).toBe(404);
  });

  it('exports the same instruments by OTLP/HTTP when flushed', async () => {
    await metrics.handle.forceFlush();
    expect(receiver.received.length).toBeGreaterThan(0);
    const resourceMetrics = receiver.received.flatMap((request) => request.resourceMetrics);
    const serviceNames = resourceMetrics.flatMap((resource) =>
      (resource.resource?.attributes ?? []).filter((attribute) => attribute.key === 'service.name').map((attribute) => attribute.value?.stringValue),
    );
    expect(serviceNames).toContain('test');
    const exported = resourceMetrics.flatMap((resource) => resource.scopeMetrics.flatMap((scope) => scope.metrics));
    expect(exported.map((metric) => metric.name)).toEqual(
      expect.arrayContaining([
        'rpc.server.call.duration',
        'clinical.rpc.server.shed',
        'clinical.rpc.server.rate_limited',
        'clinical.rpc.server.in_flight',
        'clinical.cache.lookups',
        'db.client.connection.count',
        'db.client.connection.pending_requests',
        'clinical.access_audit.pending',
      ]),
    );
    const duration = exported.find((metric) => metric.name === 'rpc.server.call.duration');
    expect(duration?.unit).toBe('s');
    const invalid = duration?.histogram?.dataPoints.find((point) =>
      point.attributes.some((attribute) => attribute.key === 'rpc.status_code' && attribute.value?.stringValue === 'INVALID_ARGUMENT'),
    );
    expect(invalid?.count).toBe(1);
  });
});
