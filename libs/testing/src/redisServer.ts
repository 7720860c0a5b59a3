import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { freePort } from './freePort.js';

/** A redis-server a test owns: it may kill and restart it. */
export interface RedisServer {
  readonly port: number;
  /** redis:// or rediss:// (with TLS), host localhost. */
  readonly url: string;
  /**
   * Starts it again on the same port: empty, unless it keeps its data on disk
   * (`persistent`) and is not asked to come back `empty` (its files removed first).
   */
  start(options?: { readonly empty?: boolean }): Promise<void>;
  /** Stops it with `signal` and waits for it to be gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  remove(): Promise<void>;
}

export interface RedisServerOptions {
  /**
   * Keeps its data in an append-only file synced on every write, as a
   * production Redis with persistence does: a restart, even after SIGKILL,
   * comes back with every key it acknowledged.
   */
  readonly persistent?: boolean;
  /** Serves TLS only (`--port 0 --tls-port`); with `requireClientCertificates`, clients must show one signed by `caFile`. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly caFile: string; readonly requireClientCertificates: boolean };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Starts a redis-server from the PATH on a free port, keeping nothing on disk unless `persistent`. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'redis-'));
  const tls = options.tls;
  const args = [
    '--bind', '127.0.0.1', '--save', '', '--dir', dir,
    ...(options.persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
    ...(tls
      ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile,
         '--tls-ca-cert-file', tls.caFile, '--tls-auth-clients', tls.requireClientCertificates ? 'yes' : 'no']
      : ['--port', String(port)]),
  ];
  let child: ChildProcess | undefined;
  const server: RedisServer = {
    port,
    url: `${tls ? 'rediss' : 'redis'}://localhost:${port}`,
    async start(startOptions = {}) {
      if (startOptions.empty) {
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir);
      }
      child = spawn('redis-server', args, { stdio: 'ignore' });
      const started = child;
      const deadline = Date.now() + 30_000;
      while (!(await accepts(port))) {
        if (started.exitCode !== null || Date.now() > deadline) {
          throw new Error(`redis-server did not start on ${port}`);
        }
        await delay(20);
      }
    },
    async stop(signal = 'SIGTERM') {
      const running = child;
      if (!running || running.exitCode !== null || running.signalCode !== null) {
        return;
      }
      await new Promise<void>((resolve) => {
        running.once('exit', () => resolve());
        running.kill(signal);
      });
    },
    async remove() {
      await server.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
