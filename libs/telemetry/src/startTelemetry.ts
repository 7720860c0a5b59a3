import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  ConsoleSpanExporter,
  SimpleSpanProcessor,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

export interface TelemetryOptions {
  /** service.name of the resource; OTEL_SERVICE_NAME wins when set. */
  readonly serviceName: string;
  /** Extra span processors (tests add an in-memory exporter here). */
  readonly spanProcessors?: readonly SpanProcessor[];
  /** Environment to read OTEL_* from. */
  readonly env?: NodeJS.ProcessEnv;
}

export interface TelemetryHandle {
  /** Flushes pending spans and stops exporting. */
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

/** Redis spans name the command and its first key (ids only), never the values. */
function redisStatement(command: string, args: ReadonlyArray<unknown>): string {
  const key = args[0];
  return typeof key === 'string' || Buffer.isBuffer(key) ? `${command} ${String(key)}` : command;
}

/**
 * Starts OpenTelemetry: a span for every gRPC call (server and client), SQL
 * query and Redis command, W3C context propagation. Must run before grpc-js,
 * pg and ioredis are loaded; `@clinical/telemetry/register` does that.
 */
export function startTelemetry(options: TelemetryOptions): TelemetryHandle {
  const env = options.env ?? process.env;
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME ?? options.serviceName }),
    spanProcessors: [...spanProcessorsFromEnv(env), ...(options.spanProcessors ?? [])],
  });
  // Global provider, AsyncLocalStorage context and W3C trace-context propagation.
  provider.register();
  const disableInstrumentations = registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      new GrpcInstrumentation(),
      // Statements go out with their $n placeholders; values are never attached.
      new PgInstrumentation({ enhancedDatabaseReporting: false }),
      new IORedisInstrumentation({ dbStatementSerializer: redisStatement }),
    ],
  });
  active = {
    async shutdown() {
      disableInstrumentations();
      await provider.shutdown();
    },
  };
  return active;
}

let active: TelemetryHandle | undefined;

/** Flushes and stops the telemetry this process started, if any. Call last on shutdown. */
export async function shutdownTelemetry(): Promise<void> {
  const handle = active;
  active = undefined;
  await handle?.shutdown();
}
