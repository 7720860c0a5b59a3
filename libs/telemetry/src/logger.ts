import { trace } from '@opentelemetry/api';
import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Paths that could carry PHI if a caller ever logged a whole record. Logging
 * them is a mistake; redaction makes the mistake harmless.
 */
const PHI_PATHS = [
  'demographics',
  'medical_history',
  'medicalHistory',
  'patient',
  'request',
  'readings',
  'content',
  '*.demographics',
  '*.medical_history',
  '*.medicalHistory',
  '*.patient',
  '*.request',
  '*.readings',
  '*.content',
];

/**
 * A pino JSON logger whose lines carry the active trace and span ids, so a log
 * line leads to its trace. Log ids and counts, never values of patient data.
 */
export function createLogger(options: { name: string; level?: string }): Logger {
  return pino({
    name: options.name,
    level: options.level ?? 'info',
    redact: { paths: PHI_PATHS, censor: '[redacted]' },
    mixin() {
      const context = trace.getActiveSpan()?.spanContext();
      return context && trace.isSpanContextValid(context)
        ? { trace_id: context.traceId, span_id: context.spanId }
        : {};
    },
  });
}
