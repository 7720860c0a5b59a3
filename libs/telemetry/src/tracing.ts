import { trace } from '@opentelemetry/api';

/** The tracer for spans the services open themselves (batches, background jobs). */
export const tracer = trace.getTracer('clinical');

/** Trace id of the active span, or undefined outside a trace. Recorded with audit events. */
export function activeTraceId(): string | undefined {
  const context = trace.getActiveSpan()?.spanContext();
  return context && trace.isSpanContextValid(context) ? context.traceId : undefined;
}
