import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createRedisClient, waitForRedis } from '@clinical/cache';
import { commandLineOf, isAlive, spawnTied, stopChild, stopLeftover } from './childProcesses.js';

/** A redis-server this script runs, and how to stop it. */
export interface RunningRedis {
  readonly url: string;
  stop(): Promise<void>;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer()
      .once('error', () => resolve(false))
      .listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

/**
 * Frees `port` of a redis-server an earlier start left there (its pid file
 * names a live redis-server on that port), and says so. Anything else on the
 * port is not ours to stop.
 * @throws Error naming the port when something else holds it.
 */
async function reclaimPort(port: number, pidFile: string, say: (message: string) => void): Promise<void> {
  if (await portIsFree(port)) {
    return;
  }
  const recorded = existsSync(pidFile) ? (JSON.parse(readFileSync(pidFile, 'utf8')) as { pid?: number; port?: number }) : {};
  const pid = recorded.pid;
  if (pid && recorded.port === port && isAlive(pid) && /redis-server/.test(commandLineOf(pid))) {
    say(`an earlier start left its redis-server running on 127.0.0.1:${port} (pid ${pid}); stopping it first`);
    await stopLeftover(pid, 'SIGTERM', 10_000);
    if (await portIsFree(port)) {
      return;
    }
  }
  throw new Error(
    `127.0.0.1:${port} is taken by a process this checkout did not start: stop it, or set DEV_REDIS_PORT (another port) or REDIS_URL (a Redis to use)`,
  );
}

/**
 * Starts a redis-server from the PATH (no persistence) on `port`, in its own
 * process group so that a terminal's Ctrl-C leaves it up while the services
 * drain, and tied to this process so that it stops with it. Its pid goes to
 * `pidFile`, so that a later start can recognise it if it is ever left
 * behind. Undefined when there is no redis-server.
 */
export async function startDevRedis(options: {
  readonly port: number;
  readonly pidFile: string;
  readonly say: (message: string) => void;
}): Promise<RunningRedis | undefined> {
  const { port, pidFile, say } = options;
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim();
  if (!found) {
    return undefined;
  }
  await reclaimPort(port, pidFile, say);
  const server = spawnTied(found, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
    detached: true,
  });
  server.on('error', () => {
    // A spawn failure: the readiness check below reports it.
  });
  if (server.pid) {
    writeFileSync(pidFile, `${JSON.stringify({ pid: server.pid, port })}\n`);
  }
  const stop = async () => {
    await stopChild(server, 'SIGTERM', 10_000);
    rmSync(pidFile, { force: true });
  };
  const url = `redis://127.0.0.1:${port}`;
  const probe = createRedisClient({ url });
  probe.on('error', () => {
    // Refused until the server is up; waitForRedis decides.
  });
  const ready = await waitForRedis(probe, 10_000);
  probe.disconnect();
  if (!ready) {
    await stop();
    throw new Error(`redis-server did not answer on ${url}`);
  }
  say(`redis-server on 127.0.0.1:${port}`);
  return { url, stop };
}
