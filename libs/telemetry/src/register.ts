/**
 * Entry for `node --import @clinical/telemetry/register`: hooks ESM imports
 * and starts OpenTelemetry before any instrumented library (grpc-js, pg,
 * ioredis) loads. The service's shutdown flushes spans through
 * `shutdownTelemetry()`.
 */
import { registerEsmHooks } from './esmHooks.js';
import { startTelemetry } from './startTelemetry.js';

const hooks = registerEsmHooks();
startTelemetry({ serviceName: process.env.SERVICE_NAME ?? 'clinical' });
await hooks.ready();
