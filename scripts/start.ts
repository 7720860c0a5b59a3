/**
 * `npm start`: runs the four services on one machine.
 * - PostgreSQL: DATABASE_URL, or else an embedded PostgreSQL 15 kept in
 *   .data/postgres (DEV_DATA_DIR moves .data).
 * - Redis: REDIS_URL, or else a redis-server from the PATH (no persistence), or
 *   else none: each service keeps its cache, rate limits and sessions in
 *   process (STATE_STORE=memory), and this says so.
 * - The schema is migrated before the services start.
 * - JWT_SECRET, or else a development secret kept in .data (say so loudly).
 * - The services run from their production bundles, rebuilt only when a
 *   source changed.
 * - `--tls` serves TLS with the development certificates (npm run dev:certs,
 *   made if missing); `--mtls` also requires client certificates.
 * Ctrl-C (or SIGTERM, SIGHUP) stops the services gracefully, then the
 * redis-server and PostgreSQL this started. Whatever this process started
 * stops with it even if it is killed outright (setpriv --pdeathsig), and a
 * start that finds what an earlier one left running stops it first.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { execFile, type ChildProcess } from 'node:child_process';
import { parseArgs, promisify } from 'node:util';
import { migrate } from '@clinical/db';
import { SERVICE_PROCESS_ARGUMENTS, SERVICES, type ServiceName } from '@clinical/server-kit';
import { DATA_DIR, ROOT } from './checkout.js';
import { readDevEnvironment, writeDevEnvironment } from './devEnvironment.js';
import { spawnTied, stopChild } from './devStack/childProcesses.js';
import { devCertificates } from './devStack/devCertificates.js';
import { startDevRedis } from './devStack/devRedis.js';
import { startEmbeddedPostgres } from './devStack/embeddedPostgres.js';

const say = (message: string) => process.stdout.write(`[start] ${message}\n`);
const { values: flags } = parseArgs({ options: { tls: { type: 'boolean', default: false }, mtls: { type: 'boolean', default: false } } });
/** What this started besides the services, stopped last-started first. */
const cleanups: (() => Promise<void>)[] = [];
const services: ChildProcess[] = [];

function startServiceProcess(name: ServiceName, env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawnTied(process.execPath, [...SERVICE_PROCESS_ARGUMENTS], {
    cwd: `${ROOT}apps/${name}`,
    env: { ...env, SERVICE_NAME: name },
    stdio: 'inherit',
  });
  say(`${name} starting on port ${env[`${SERVICES[name].envPrefix}_PORT`] ?? SERVICES[name].port}`);
  return child;
}

let stopping: Promise<void> | undefined;
/** Stops the services (they drain), then the rest, then exits with `code`. */
function stop(code: number): Promise<void> {
  stopping ??= (async () => {
    say('stopping');
    // A service's own grace period is 10 s by default (SHUTDOWN_GRACE_MS); past twice that, it is stuck.
    await Promise.all(services.map((child) => stopChild(child, 'SIGTERM', 30_000)));
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((error: unknown) => say(`stopping: ${(error as Error).message}`));
    }
    say('stopped');
    process.exit(code);
  })();
  return stopping;
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => void stop(0));
}
// Whoever started this (npm, a shell) is gone: stop too, as the children of a killed start do.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) {
    say('the process that started this is gone');
    void stop(1);
  }
}, 1_000).unref();

try {
  mkdirSync(DATA_DIR, { recursive: true });
  let databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    const postgres = await startEmbeddedPostgres({
      dataDir: `${DATA_DIR}postgres`,
      port: Number(process.env.EMBEDDED_POSTGRES_PORT ?? 54329),
      logFile: `${DATA_DIR}postgres.log`,
      say,
    });
    cleanups.push(postgres.stop);
    databaseUrl = postgres.url;
  }
  const applied = await migrate({ databaseUrl, migrationsDir: `${ROOT}db/migrations` });
  say(applied.length > 0 ? `migrated: ${applied.join(', ')}` : 'schema up to date');

  // A Redis the environment names (one node or a cluster) is used as it is.
  const redisConfigured = Boolean(process.env.REDIS_URL || process.env.REDIS_CLUSTER_NODES);
  let redisUrl = process.env.REDIS_URL;
  if (!redisConfigured) {
    const redis = await startDevRedis({ port: Number(process.env.DEV_REDIS_PORT ?? 6390), pidFile: `${DATA_DIR}redis-server.json`, say });
    if (redis) {
      cleanups.push(redis.stop);
      redisUrl = redis.url;
    }
  }
  const stateStore = redisConfigured || redisUrl ? 'redis' : 'memory';
  if (stateStore === 'memory') {
    say(
      'no REDIS_URL and no redis-server on the PATH: each service keeps its cache, rate limits and sessions ' +
        'in its own process (STATE_STORE=memory); tokens are not registered as sessions and cannot be revoked. ' +
        'Install Redis 7 or set REDIS_URL for the real thing.',
    );
  }
  let jwtSecret = process.env.JWT_SECRET;
  if (!jwtSecret) {
    jwtSecret = readDevEnvironment().JWT_SECRET ?? randomBytes(32).toString('base64url');
    say(`JWT_SECRET not set: using a development secret kept in ${DATA_DIR}dev-env.json (never in production)`);
  }
  writeDevEnvironment({ DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, STATE_STORE: stateStore, JWT_SECRET: jwtSecret });

  // Each service's build target (tools/build-service.mjs): it rebuilds only what changed.
  await Promise.all(
    Object.keys(SERVICES).map(async (name) => {
      const { stdout } = await promisify(execFile)(process.execPath, [`${ROOT}tools/build-service.mjs`], { cwd: `${ROOT}apps/${name}` });
      process.stdout.write(stdout);
    }),
  );
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, STATE_STORE: stateStore, JWT_SECRET: jwtSecret };
  if (flags.tls || flags.mtls) {
    const { certificates, made } = devCertificates(`${DATA_DIR}certs`);
    Object.assign(env, { TLS_CERT_FILE: certificates.server.certFile, TLS_KEY_FILE: certificates.server.keyFile });
    if (flags.mtls) {
      Object.assign(env, { TLS_CLIENT_CA_FILE: certificates.caFile, TLS_SERVICE_IDENTITIES: certificates.client.identity });
    }
    say(
      `${made ? 'made development certificates; ' : ''}serving ${flags.mtls ? 'mutual TLS' : 'TLS'}: grpcurl -cacert ${certificates.caFile}` +
        (flags.mtls ? ` -cert ${certificates.client.certFile} -key ${certificates.client.keyFile}` : '') +
        ' localhost:50051 list',
    );
  }
  for (const name of Object.keys(SERVICES) as ServiceName[]) {
    const child = startServiceProcess(name, env);
    child.once('exit', (code, signal) => {
      if (!stopping) {
        say(`${name} exited (${signal ?? code}); stopping the rest`);
        void stop(1);
      }
    });
    services.push(child);
  }
  say('mint a token with: npm run -s token -- --roles coordinator --sites SITE-A');
} catch (error) {
  // The reason alone: what failed is said in words, a stack trace would bury it.
  process.stderr.write(`[start] ${(error as Error).message}\n`);
  await stop(1);
}
