/**
 * The container's health check, `node dist/healthcheck.mjs` beside a
 * service's bundle (tools/bundle.mjs builds it with the service): calls
 * grpc.health.v1.Health/Check for the whole server on this machine and exits
 * 0 when it answers SERVING, 1 otherwise (NOT_SERVING while draining, no
 * answer, an error). No grpc_health_probe binary and no development
 * dependency: only @grpc/grpc-js, which the service itself imports.
 *
 * It reads the service's own settings: SERVICE_NAME picks the port variable
 * (`<PREFIX>_PORT`, else the default port); TLS_CERT_FILE set means the port
 * serves TLS only, so the check speaks TLS. The check asks a process on this
 * machine whether it is up, not who it is: the server's certificate is not
 * verified (it names the service's DNS names, not localhost). A port that
 * requires client certificates (TLS_CLIENT_CA_FILE) needs one for the check
 * too: HEALTHCHECK_TLS_CERT_FILE and HEALTHCHECK_TLS_KEY_FILE.
 * HEALTHCHECK_TIMEOUT_MS (3000) bounds the call.
 */
import { readFileSync } from 'node:fs';
import { Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { SERVICES, type ServiceName } from '../config/serviceConfig.js';

/** grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING */
const SERVING = 1;

/** The status field (1, varint) of an encoded HealthCheckResponse; absent: UNKNOWN (0). */
function servingStatusOf(response: Buffer): number {
  return response.length >= 2 && response[0] === 0x08 ? response[1]! : 0;
}

function fail(message: string): never {
  process.stderr.write(`healthcheck: ${message}\n`);
  process.exit(1);
}

const env = process.env;
const serviceName = env.SERVICE_NAME as ServiceName | undefined;
const service = serviceName ? SERVICES[serviceName] : undefined;
if (!service) {
  fail(`SERVICE_NAME must name a service (${Object.keys(SERVICES).join(', ')}), not ${JSON.stringify(serviceName)}`);
}
const port = Number(env[`${service.envPrefix}_PORT`] || service.port);
// A server bound to one address answers there; bound to every address, on loopback.
const bound = env.GRPC_HOST ?? '0.0.0.0';
const host = bound === '0.0.0.0' || bound === '::' || bound === '' ? '127.0.0.1' : bound;
const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
const channelCredentials = env.TLS_CERT_FILE
  ? credentials.createSsl(
      null,
      env.HEALTHCHECK_TLS_KEY_FILE ? readFileSync(env.HEALTHCHECK_TLS_KEY_FILE) : null,
      env.HEALTHCHECK_TLS_CERT_FILE ? readFileSync(env.HEALTHCHECK_TLS_CERT_FILE) : null,
      { rejectUnauthorized: false },
    )
  : credentials.createInsecure();

const client = new Client(address, channelCredentials);
const deadline = Date.now() + Number(env.HEALTHCHECK_TIMEOUT_MS || 3_000);
client.makeUnaryRequest(
  '/grpc.health.v1.Health/Check',
  (request: Buffer) => request,
  (response: Buffer) => response,
  // HealthCheckRequest{service: ""}: every field at its default, so no bytes.
  Buffer.alloc(0),
  new Metadata(),
  { deadline },
  (error: ServiceError | null, response?: Buffer) => {
    client.close();
    if (error) {
      fail(`${address}: ${error.details || error.message}`);
    }
    const status = servingStatusOf(response ?? Buffer.alloc(0));
    if (status !== SERVING) {
      fail(`${address}: ${['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'][status] ?? status}`);
    }
    process.stdout.write(`healthcheck: ${address} SERVING\n`);
    process.exit(0);
  },
);
