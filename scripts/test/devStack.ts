import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SERVICE_PROCESS_ARGUMENTS, SERVICES, type ServiceName } from '@clinical/server-kit';
import { eventually, freePort } from '@clinical/testing';
import { createChannel, createClient } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health.js';
import { expect } from 'vitest';
import { ROOT } from '../checkout.js';

export { freePort } from '@clinical/testing';

export function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Whether health answers SERVING on every port. */
export async function allServing(ports: readonly number[]): Promise<boolean> {
  for (const port of ports) {
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

/** A run of `npm start`: its process (a group of its own) and what it printed. */
export interface StartRun {
  readonly child: ChildProcess;
  output(): string;
}

/**
 * `npm start` as a new user runs it, nothing configured (no DATABASE_URL, no
 * REDIS_URL, no JWT_SECRET): it brings up its own PostgreSQL and
 * redis-server, then the four services. Only its ports and its data
 * directory are this harness's, so that it stays out of the way of a stack a
 * developer runs. Every process it starts inherits DEV_DATA_DIR, which names
 * the harness's directory: that is how the harness finds them all.
 */
export interface DevStack {
  readonly dataDir: string;
  readonly ports: { readonly postgres: number; readonly redis: number; readonly services: readonly number[] };
  /** The environment npm start runs with. */
  readonly env: NodeJS.ProcessEnv;
  npmStart(): StartRun;
  /** Waits for every service to answer health SERVING (the first start also initialises and migrates the database). */
  untilServing(run: StartRun): Promise<void>;
  /**
   * Another process of `service` beside the running stack's, started as npm
   * start starts its services, with the settings it recorded, on `port`
   * (plus `env`). It carries the stack's environment, so remove() finds and kills it if still running.
   */
  startServiceProcess(service: ServiceName, port: number, env?: Record<string, string>): ChildProcess;
  /** `npm run -s <script> -- <args>` against this stack; its standard output. */
  npmRun(script: string, args: readonly string[]): Promise<string>;
  /** The processes whose environment names this stack's data directory (this test's own process aside). */
  processes(): { pid: number; command: string }[];
  /** Nothing listens on any of the stack's ports, and none of its processes is left. */
  expectNothingLeft(): Promise<void>;
  /** Kills whatever is left and removes the data directory. */
  remove(): void;
}

export interface DevStackOptions {
  /**
   * Settings added to the environment npm start runs with (and so to the
   * services it starts, which inherit it), after the harness's own.
   */
  readonly env?: NodeJS.ProcessEnv;
}

export async function createDevStack(options: DevStackOptions = {}): Promise<DevStack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'npm-start-'));
  const ports = {
    postgres: await freePort(),
    redis: await freePort(),
    services: [await freePort(), await freePort(), await freePort(), await freePort()],
  };
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
  Object.assign(env, options.env);
  const runs: ChildProcess[] = [];

  const processes = () => {
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
  };

  return {
    dataDir,
    ports,
    env,
    npmStart() {
      const child = spawn('npm', ['start'], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
      runs.push(child);
      return { child, output: () => output };
    },
    async untilServing(run) {
      await eventually(
        async () => {
          if (run.child.exitCode !== null) {
            throw new Error(`npm start ended before serving:\n${run.output()}`);
          }
          return (await allServing(ports.services)) ? true : undefined;
        },
        240_000,
        'the four services to serve',
      );
    },
    startServiceProcess(service, port, extra = {}) {
      const settings = JSON.parse(readFileSync(join(dataDir, 'dev-env.json'), 'utf8')) as Record<string, string>;
      const child = spawn(process.execPath, [...SERVICE_PROCESS_ARGUMENTS], {
        cwd: join(ROOT, 'apps', service),
        env: { ...env, ...settings, SERVICE_NAME: service, [`${SERVICES[service].envPrefix}_PORT`]: String(port), LOG_LEVEL: 'warn', ...extra },
        stdio: 'ignore',
      });
      return child;
    },
    async npmRun(script, args) {
      const { stdout } = await promisify(execFile)('npm', ['run', '-s', script, '--', ...args], { cwd: ROOT, env });
      return stdout.trim();
    },
    processes,
    async expectNothingLeft() {
      for (const port of [ports.postgres, ports.redis, ...ports.services]) {
        expect(await isListening(port), `port ${port}`).toBe(false);
      }
      expect(processes()).toEqual([]);
    },
    remove() {
      // Whatever a failed test left: the groups first, then anything that carries the marker.
      for (const run of runs) {
        if (run.pid && run.exitCode === null) {
          try {
            process.kill(-run.pid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }
      }
      for (const { pid } of processes()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Resolves with the exit code once the process has ended. */
export function exitOf(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** What a finished command printed, and how it exited. */
export interface CommandRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `command` from the checkout with exactly `env`, and waits for it to end: its exit code and output, whatever the code. */
export function runCommand(command: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<CommandRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
