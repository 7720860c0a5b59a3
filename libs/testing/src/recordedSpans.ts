import type { InMemorySpanExporter, ReadableSpan } from '@opentelemetry/sdk-trace-base';

export const SPAN_EXPORTER_KEY = Symbol.for('clinical.testing.spanExporter');

/** Spans finished so far in this test worker (requires the telemetry-setup file). */
export function recordedSpans(): ReadableSpan[] {
  const exporter = (globalThis as { [SPAN_EXPORTER_KEY]?: InMemorySpanExporter })[SPAN_EXPORTER_KEY];
  if (!exporter) {
    throw new Error('recordedSpans: add @clinical/testing/telemetry-setup to the vitest setupFiles');
  }
  return exporter.getFinishedSpans();
}
