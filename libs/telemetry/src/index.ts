export { shutdownTelemetry, startTelemetry, type TelemetryHandle, type TelemetryOptions } from './startTelemetry.js';
export {
  metricsEndpoint,
  metricsStarted,
  serviceMeter,
  metricsSettingsFromEnv,
  startMetrics,
  type MetricsEndpoint,
  type MetricsHandle,
  type MetricsOptions,
  type MetricsSettings,
} from './metrics.js';
export { registerEsmHooks } from './esmHooks.js';
export { createLogger, type Logger } from './logger.js';
export { activeTraceId, tracer } from './tracing.js';
export { describeError } from './describeError.js';
