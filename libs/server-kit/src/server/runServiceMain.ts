import { describeError, metricsEndpoint, shutdownTelemetry } from '@clinical/telemetry';
import { ConfigError } from '../config/loadConfig.js';
import { loadServiceConfig } from '../config/serviceConfig.js';
import { startService, type ServiceModule } from './startService.js';

/**
 * A service process's main: configuration from the environment (exit 78 with
 * every problem listed when it is wrong, also when it does not fit the
 * service, such as a rate limit below a method's cost), serve, and stop
 * gracefully on SIGTERM or SIGINT.
 */
export async function runServiceMain(module: ServiceModule): Promise<void> {
  let running;
  try {
    running = await startService(module, loadServiceConfig(module.name));
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${module.name}: ${error.message}\n`);
      process.exit(78);
    }
    throw error;
  }
  const { logger } = running.runtime;
  const metrics = metricsEndpoint();
  logger.info({ port: running.port, ...(metrics ? { metricsPort: metrics.port } : {}) }, 'serving');
  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    // A terminal's Ctrl-C under `npm start` brings SIGINT, and the script's SIGTERM follows: one stop.
    if (stopping) {
      return;
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    try {
      await running.stop();
      logger.info('stopped');
      await shutdownTelemetry();
      process.exit(0);
    } catch (error) {
      logger.error({ error: describeError(error) }, 'unclean shutdown');
      process.exit(1);
    }
  };
  if (running.runtime.config.tls || running.runtime.config.jwt.jwksFile) {
    // SIGHUP: read the TLS certificates and the JWKS file again now (they are also checked for changes every few seconds).
    process.on('SIGHUP', () => {
      logger.info({ changed: running.reloadKeys() }, 'TLS certificates and token keys read again');
    });
  }
  process.once('SIGTERM', (signal) => void stop(signal));
  process.once('SIGINT', (signal) => void stop(signal));
}
