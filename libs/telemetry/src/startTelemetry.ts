import { metrics } from '@opentelemetry/api';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  SimpleSpanProcessor,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { startMetrics } from './metrics.js';

export interface TelemetryOptions {
  /** service.name of the resource; OTEL_SERVICE_NAME wins when set. */
  readonly serviceName: string;
  /** Extra span processors (tests add an in-memory exporter here). */
  readonly spanProcessors?: readonly SpanProcessor[];
  /** Environment to read OTEL_* from. */
  readonly env?: NodeJS.ProcessEnv;
}

export interface TelemetryHandle {
  /**
   * Resolves once the metrics endpoint (METRICS_PORT) listens, at once
   * without one; rejects when it cannot listen.
   */
  readonly ready: Promise<void>;
  /** Flushes pending spans and metrics and stops exporting (and the metrics endpoint). */
  shutdown(): Promise<void>;
}

/**
 * Exporters named by OTEL_TRACES_EXPORTER (`none` by default; `console`,
 * `otlp`, or a comma list). OTLP honours the standard OTEL_EXPORTER_OTLP_*
 * variables. Spans are created even with no exporter, so that logs and audit
 * events always carry a trace id.
 */
function spanProcessorsFromEnv(env: NodeJS.ProcessEnv): SpanProcessor[] {
  const names = (env.OTEL_TRACES_EXPORTER ?? 'none')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== '' && name !== 'none');
  return names.map((name) => {
    switch (name) {
      case 'console':
        return new SimpleSpanProcessor(new ConsoleSpanExporter());
      case 'otlp':
        return new BatchSpanProcessor(new OTLPTraceExporter());
      default:
        throw new Error(`OTEL_TRACES_EXPORTER: unsupported exporter "${name}" (use none, console or otlp)`);
    }
  });
}

/**
 * The telemetry this process started, kept on globalThis: the `--import`
 * register bundle starts it, and the service's bundle (its own copy of this
 * module) stops it.
 */
const ACTIVE = Symbol.for('@clinical/telemetry/telemetry');
const holder = globalThis as { [ACTIVE]?: TelemetryHandle };

/** Redis spans name the command and its first key (ids only), never the values. */
function redisStatement(command: string, args: ReadonlyArray<unknown>): string {
  const key = args[0];
  return typeof key === 'string' || Buffer.isBuffer(key) ? `${command} ${String(key)}` : command;
}

/**
 * Starts OpenTelemetry: a span for every SQL query and Redis command made
 * within a traced call (the server kit opens a span for every gRPC call it
 * serves), W3C context propagation; and metrics when the
 * environment asks for them (OTEL_METRICS_EXPORTER, METRICS_PORT: see
 * startMetrics). Must run before pg and ioredis are loaded;
 * `@clinical/telemetry/register` does that.
 * @throws Error naming a malformed OTEL_* or METRICS_* variable.
 */
export function startTelemetry(options: TelemetryOptions): TelemetryHandle {
  const env = options.env ?? process.env;
  const spanProcessors = [...spanProcessorsFromEnv(env), ...(options.spanProcessors ?? [])];
  const meters = startMetrics({ serviceName: options.serviceName, env });
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME ?? options.serviceName }),
    spanProcessors,
    // With nowhere to send spans, none is recorded: each call still gets a trace (ids propagated, in logs
    // and audit events) at the price of a non-recording span. With an exporter, OTEL_TRACES_SAMPLER decides
    // (the SDK's default records every call; parentbased_traceidratio with OTEL_TRACES_SAMPLER_ARG=0.01
    // records one in a hundred, and a caller's sampled traceparent is always followed).
    ...(spanProcessors.length === 0 ? { sampler: new AlwaysOffSampler() } : {}),
  });
  // Global provider, AsyncLocalStorage context and W3C trace-context propagation.
  provider.register();
  const disableInstrumentations = registerInstrumentations({
    tracerProvider: provider,
    // The instrumentations' own metrics (pg's db.client.operation.duration) when metrics are on.
    ...(meters ? { meterProvider: metrics.getMeterProvider() } : {}),
    // gRPC server spans are the server kit's own (callTracingMiddleware): the gRPC instrumentation cost
    // every call about a sixth of a cached read's CPU, sampled or not.
    instrumentations: [
      // Statements go out with their $n placeholders; values are never attached.
      new PgInstrumentation({ enhancedDatabaseReporting: false }),
      new IORedisInstrumentation({ dbStatementSerializer: redisStatement }),
      // Event-loop delay and utilisation, heap and GC: what says a process is saturated or leaking.
      ...(meters ? [new RuntimeNodeInstrumentation()] : []),
    ],
  });
  const handle: TelemetryHandle = {
    ready: meters?.ready ?? Promise.resolve(),
    async shutdown() {
      disableInstrumentations();
      await Promise.all([provider.shutdown(), meters?.shutdown()]);
    },
  };
  holder[ACTIVE] = handle;
  return handle;
}

/** Flushes and stops the telemetry this process started, if any. Call last on shutdown. */
export async function shutdownTelemetry(): Promise<void> {
  const handle = holder[ACTIVE];
  delete holder[ACTIVE];
  await handle?.shutdown();
}
