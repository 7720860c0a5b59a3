export { shutdownTelemetry, startTelemetry, type TelemetryHandle, type TelemetryOptions } from './startTelemetry.js';
export { registerEsmHooks } from './esmHooks.js';
export { createLogger, type Logger } from './logger.js';
export { activeTraceId, tracer } from './tracing.js';
export { describeError } from './describeError.js';
