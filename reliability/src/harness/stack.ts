import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createDatabasePool, migrate, sql } from '@clinical/db';
import { mintToken, openSession, SERVICE_PROCESS_ARGUMENTS, SERVICES, type Role, type ServiceName } from '@clinical/server-kit';
import {
  eventually,
  freePort,
  healthStatus,
  startPostgresCluster,
  startRedisServer,
  type PostgresCluster,
  type RedisServer,
  type RedisServerOptions,
} from '@clinical/testing';
import type { DatabasePool } from 'slonik';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const SERVICE_NAMES = Object.keys(SERVICES) as ServiceName[];

/** One service as a process of its own, from its production bundle, as `npm start` runs it. */
export interface ServiceProcess {
  readonly name: ServiceName;
  readonly port: number;
  readonly address: string;
  readonly metricsPort: number;
  /** Its pid while it runs. */
  pid(): number | undefined;
  /** Starts it (again, on the same ports) and waits for health SERVING. */
  start(): Promise<void>;
  /** Sends `signal` and waits for the exit: its code, or the signal that ended it. */
  kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Exits it had that nobody asked for (a crash): each `name: code/signal`. */
  unexpectedExits(): readonly string[];
  /** What it printed (stdout and stderr), for a failing scenario's diagnosis. */
  logFile: string;
}

export interface ReliabilityStackOptions {
  readonly redis?: RedisServerOptions;
  /** More postgresql.conf settings for the stack's own cluster. */
  readonly postgresSettings?: Readonly<Record<string, string>>;
  /** More environment for every service (DATABASE_STATEMENT_TIMEOUT_MS, MAX_IN_FLIGHT_COST...). */
  readonly serviceEnv?: Readonly<Record<string, string>>;
}

/** The stack a scenario owns: PostgreSQL and Redis it may kill, and the four services. */
export interface ReliabilityStack {
  readonly postgres: PostgresCluster;
  readonly redis: RedisServer;
  /** A superuser pool on the clinical database: what the database holds, checked from outside the services. */
  readonly db: DatabasePool;
  readonly services: Readonly<Record<ServiceName, ServiceProcess>>;
  /** A bearer token with its session opened, for `roles` at every site. */
  token(sub: string, roles: readonly Role[]): Promise<string>;
  /** Stops everything it started and removes its files. */
  remove(): Promise<void>;
}

const exec = promisify(execFile);

/**
 * Starts a PostgreSQL 15 cluster and a redis-server of the scenario's own,
 * migrates the schema, builds the bundles when a source changed, and starts
 * the four services against them as processes.
 */
export async function startReliabilityStack(options: ReliabilityStackOptions = {}): Promise<ReliabilityStack> {
  const workDir = mkdtempSync(join(tmpdir(), 'reliability-'));
  // Each service's build target rebuilds only what changed (as npm start does).
  await Promise.all(SERVICE_NAMES.map((name) => exec(process.execPath, [`${ROOT}tools/build-service.mjs`], { cwd: `${ROOT}apps/${name}` })));

  const postgres = await startPostgresCluster({
    settings: { max_connections: '200', log_error_verbosity: 'terse', ...options.postgresSettings },
  });
  const redis = await startRedisServer(options.redis);
  const admin = await createDatabasePool({ connectionUri: postgres.url('postgres'), maximumPoolSize: 1 });
  await admin.query(sql.unsafe`CREATE DATABASE clinical`);
  await admin.end();
  const databaseUrl = postgres.url('clinical');
  await migrate({ databaseUrl, migrationsDir: `${ROOT}db/migrations` });
  const db = await createDatabasePool({ connectionUri: databaseUrl, maximumPoolSize: 4, statementTimeoutMs: 120_000 });
  const jwtSecret = randomBytes(32).toString('base64url');

  const { NODE_OPTIONS: _ignored, REDIS_CLUSTER_NODES: _cluster, ...inherited } = process.env;
  const env: NodeJS.ProcessEnv = {
    ...inherited,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redis.url,
    STATE_STORE: 'redis',
    JWT_SECRET: jwtSecret,
    GRPC_HOST: '127.0.0.1',
    METRICS_HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    // The load is one user making hundreds of calls a second: far past a person's limit, which is not what is tested here.
    RATE_LIMIT_POINTS: '100000000',
    ...options.serviceEnv,
  };

  const services = {} as Record<ServiceName, ServiceProcess>;
  for (const name of SERVICE_NAMES) {
    services[name] = await serviceProcess(name, env, workDir);
  }
  await Promise.all(SERVICE_NAMES.map((name) => services[name].start()));

  return {
    postgres,
    redis,
    db,
    services,
    async token(sub, roles) {
      const { token, sid } = await mintToken({
        secret: jwtSecret,
        issuer: 'clinical-platform',
        audience: 'clinical-data-services',
        sub,
        roles: [...roles],
        sites: '*',
        ttlSeconds: 3_600,
      });
      await openSession(db, { sid, sub, expiresAt: new Date(Date.now() + 3_600_000) });
      return token;
    },
    async remove() {
      await Promise.all(SERVICE_NAMES.map((name) => services[name].kill('SIGKILL')));
      await db.end().catch(() => undefined);
      await redis.remove();
      await postgres.remove();
      rmSync(workDir, { recursive: true, force: true });
    },
  };
}

async function serviceProcess(name: ServiceName, baseEnv: NodeJS.ProcessEnv, workDir: string): Promise<ServiceProcess> {
  const port = await freePort();
  const metricsPort = await freePort();
  const logFile = join(workDir, `${name}.log`);
  const log = createWriteStream(logFile, { flags: 'a' });
  let child: ChildProcess | undefined;
  const expected = new WeakSet<ChildProcess>();
  const crashes: string[] = [];
  const env = { ...baseEnv, SERVICE_NAME: name, [`${SERVICES[name].envPrefix}_PORT`]: String(port), METRICS_PORT: String(metricsPort) };
  const address = `127.0.0.1:${port}`;

  const service: ServiceProcess = {
    name,
    port,
    address,
    metricsPort,
    logFile,
    pid: () => (child && child.exitCode === null && child.signalCode === null ? child.pid : undefined),
    async start() {
      const started = spawn(process.execPath, [...SERVICE_PROCESS_ARGUMENTS], { cwd: `${ROOT}apps/${name}`, env, stdio: ['ignore', 'pipe', 'pipe'] });
      child = started;
      started.stdout?.pipe(log, { end: false });
      started.stderr?.pipe(log, { end: false });
      started.once('exit', (code, signal) => {
        if (!expected.has(started)) {
          crashes.push(`${name}: ${signal ?? code}`);
        }
      });
      await eventually(
        async () => {
          if (started.exitCode !== null || started.signalCode !== null) {
            throw new Error(`${name} exited while starting:\n${readFileSync(logFile, 'utf8').slice(-2_000)}`);
          }
          return (await healthStatus(address)) === 'SERVING' ? true : undefined;
        },
        120_000,
        `${name} serving`,
      );
    },
    kill(signal) {
      const running = child;
      if (!running || running.exitCode !== null || running.signalCode !== null) {
        return Promise.resolve({ code: running?.exitCode ?? null, signal: running?.signalCode ?? null });
      }
      expected.add(running);
      return new Promise((resolve) => {
        running.once('exit', (code, exitSignal) => resolve({ code, signal: exitSignal }));
        running.kill(signal);
      });
    },
    unexpectedExits: () => crashes,
  };
  return service;
}
