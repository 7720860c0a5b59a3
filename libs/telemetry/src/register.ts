/**
 * Entry for `node --import @clinical/telemetry/register`: hooks ESM imports
 * and starts OpenTelemetry before any instrumented library (pg,
 * ioredis) loads, and the metrics endpoint (METRICS_PORT) before the service
 * starts: a port that cannot be bound stops the process here. The service's
 * shutdown flushes spans and metrics through `shutdownTelemetry()`.
 */
import { registerEsmHooks } from './esmHooks.js';
import { startTelemetry } from './startTelemetry.js';

const hooks = registerEsmHooks();
const telemetry = startTelemetry({ serviceName: process.env.SERVICE_NAME ?? 'clinical' });
await Promise.all([hooks.ready(), telemetry.ready]);
