/**
 * A vitest setup file: starts OpenTelemetry in the test worker, before the
 * test file imports grpc-js, pg or ioredis, with an in-memory exporter that
 * tests read through `recordedSpans()`.
 */
import { registerEsmHooks, startTelemetry } from '@clinical/telemetry';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { SPAN_EXPORTER_KEY } from './recordedSpans.js';

const holder = globalThis as { [SPAN_EXPORTER_KEY]?: InMemorySpanExporter };
if (!holder[SPAN_EXPORTER_KEY]) {
  const hooks = registerEsmHooks();
  const exporter = new InMemorySpanExporter();
  startTelemetry({ serviceName: 'test', spanProcessors: [new SimpleSpanProcessor(exporter)] });
  await hooks.ready();
  holder[SPAN_EXPORTER_KEY] = exporter;
}
