import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from '@clinical/testing';
import { createChannel, createClient } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../checkout.js';

/**
 * `npm start` as a new user runs it: nothing configured (no DATABASE_URL, no
 * REDIS_URL, no JWT_SECRET), so it brings up its own PostgreSQL and
 * redis-server, then the four services. Only its ports and its data
 * directory are its own, so that it stays out of the way of a stack a
 * developer runs. Every process it starts inherits DEV_DATA_DIR, which names
 * this test's directory: that is how the test finds them all.
 */
let dataDir: string;
let ports: { postgres: number; redis: number; services: number[] };
let started: ChildProcess | undefined;

/** A port nothing listens on now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** The processes whose environment names this test's data directory: everything the start started, and itself. */
function processesOfThisStart(): { pid: number; command: string }[] {
  const marker = `DEV_DATA_DIR=${dataDir}\0`;
  const found: { pid: number; command: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) {
      continue;
    }
    try {
      if (readFileSync(`/proc/${entry}/environ`, 'utf8').includes(marker)) {
        found.push({ pid: Number(entry), command: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim() });
      }
    } catch {
      // Gone meanwhile, or not readable: not one of ours.
    }
  }
  return found;
}

/** `npm start` in its own process group, as a terminal runs it; its output is kept. */
function npmStart(): { child: ChildProcess; output: () => string } {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'REDIS_CLUSTER_NODES', 'JWT_SECRET', 'STATE_STORE', 'NODE_OPTIONS']) {
    delete env[name];
  }
  const [patient, vitals, audit, analytics] = ports.services;
  Object.assign(env, {
    DEV_DATA_DIR: dataDir,
    EMBEDDED_POSTGRES_PORT: String(ports.postgres),
    DEV_REDIS_PORT: String(ports.redis),
    PATIENT_SVC_PORT: String(patient),
    VITALS_SVC_PORT: String(vitals),
    AUDIT_SVC_PORT: String(audit),
    ANALYTICS_SVC_PORT: String(analytics),
    GRPC_HOST: '127.0.0.1',
  });
  const child = spawn('npm', ['start'], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  started = child;
  return { child, output: () => output };
}

async function allServing(): Promise<boolean> {
  for (const port of ports.services) {
    const channel = createChannel(`127.0.0.1:${port}`);
    try {
      const { status } = await createClient(HealthDefinition, channel).check({ service: '' }, { signal: AbortSignal.timeout(2_000) });
      if (status !== HealthCheckResponse_ServingStatus.SERVING) {
        return false;
      }
    } catch {
      return false;
    } finally {
      channel.close();
    }
  }
  return true;
}

/** Waits for every service to answer health SERVING (the first start also initialises and migrates the database). */
async function untilServing(run: { child: ChildProcess; output: () => string }): Promise<void> {
  await eventually(
    async () => {
      if (run.child.exitCode !== null) {
        throw new Error(`npm start ended before serving:\n${run.output()}`);
      }
      return (await allServing()) ? true : undefined;
    },
    240_000,
    'the four services to serve',
  );
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Nothing listens on any port the start used, and none of its processes is left. */
async function expectNothingLeft(): Promise<void> {
  for (const port of [ports.postgres, ports.redis, ...ports.services]) {
    expect(await isListening(port), `port ${port}`).toBe(false);
  }
  expect(processesOfThisStart()).toEqual([]);
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'npm-start-'));
  ports = { postgres: await freePort(), redis: await freePort(), services: [await freePort(), await freePort(), await freePort(), await freePort()] };
});

afterAll(() => {
  // Whatever a failed test left: the group first, then anything that carries the marker.
  if (started?.pid && started.exitCode === null) {
    try {
      process.kill(-started.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  for (const { pid } of processesOfThisStart()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  rmSync(dataDir, { recursive: true, force: true });
});

describe('npm start, then Ctrl-C', () => {
  it('stops everything it started, every time: nothing listens on its ports and no process is left', async () => {
    for (let round = 1; round <= 3; round += 1) {
      const run = npmStart();
      await untilServing(run);
      // Ctrl-C in a terminal: SIGINT to the whole foreground process group.
      process.kill(-run.child.pid!, 'SIGINT');
      await exitOf(run.child);
      expect(run.output(), `round ${round}`).toContain('[start] stopped');
      await expectNothingLeft();
    }
  }, 600_000);

  it('takes everything down with it when it is killed outright (SIGKILL), leaving nothing to clean', async () => {
    const run = npmStart();
    await untilServing(run);
    const script = processesOfThisStart().find(({ command }) => command.includes('scripts/run.mjs start'));
    expect(script).toBeDefined();
    process.kill(script!.pid, 'SIGKILL');
    // The kernel tells its children (setpriv --pdeathsig): the services drain and stop, PostgreSQL and Redis stop.
    await eventually(async () => (processesOfThisStart().length === 0 ? true : undefined), 60_000, 'every process to stop');
    process.kill(-run.child.pid!, 'SIGKILL');
    await exitOf(run.child);
    await expectNothingLeft();
  }, 300_000);

  it('stops a redis-server an earlier start left running on its port, and says so', async () => {
    // As a start killed on a system without setpriv would leave it: running, with its pid file.
    const leftover = spawn('redis-server', ['--port', String(ports.redis), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      detached: true,
      stdio: 'ignore',
      env: { ...process.env, DEV_DATA_DIR: dataDir },
    });
    await eventually(async () => ((await isListening(ports.redis)) ? true : undefined), 30_000, 'the leftover redis-server');
    writeFileSync(join(dataDir, 'redis-server.json'), JSON.stringify({ pid: leftover.pid, port: ports.redis }));

    const run = npmStart();
    await untilServing(run);
    expect(run.output()).toContain(`an earlier start left its redis-server running on 127.0.0.1:${ports.redis} (pid ${leftover.pid}); stopping it first`);
    expect(leftover.exitCode !== null || leftover.signalCode !== null).toBe(true);
    process.kill(-run.child.pid!, 'SIGINT');
    await exitOf(run.child);
    await expectNothingLeft();
  }, 300_000);
});
