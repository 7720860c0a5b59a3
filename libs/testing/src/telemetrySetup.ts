/**
 * A vitest setup file: starts OpenTelemetry in the test worker, before the
 * test file imports grpc-js, pg or ioredis, with an in-memory exporter that
 * tests read through `recordedSpans()`.
 */
import { createRequire } from 'node:module';
import { registerEsmHooks, startTelemetry } from '@clinical/telemetry';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { SPAN_EXPORTER_KEY } from './recordedSpans.js';

const holder = globalThis as { [SPAN_EXPORTER_KEY]?: InMemorySpanExporter };
if (!holder[SPAN_EXPORTER_KEY]) {
  const hooks = registerEsmHooks();
  const exporter = new InMemorySpanExporter();
  startTelemetry({ serviceName: 'test', spanProcessors: [new SimpleSpanProcessor(exporter)] });
  await hooks.ready();
  // Vitest imports external packages by absolute path, which the ESM hook does
  // not match by package name. Requiring it once by name lets the require hook
  // patch the shared CommonJS module (prototype patches), which every later
  // import then sees.
  createRequire(import.meta.url)('ioredis');
  holder[SPAN_EXPORTER_KEY] = exporter;
}
