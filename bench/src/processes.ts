import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVICE_PROCESS_ARGUMENTS } from '@clinical/server-kit';
import { eventually, freePort, healthStatus, residentMiB } from '@clinical/testing';
import * as grpc from '@grpc/grpc-js';
import type { FloorSpec } from './floorServer.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ServerProcess {
  readonly address: string;
  readonly pid: number;
  /** Peak resident memory seen so far, in MiB (sampled every 100 ms). */
  peakRssMiB(): number;
  stop(): Promise<void>;
}

function watchMemory(child: ChildProcess): { peak(): number; stop(): void } {
  let peakMiB = 0;
  const timer = setInterval(() => (peakMiB = Math.max(peakMiB, residentMiB(child.pid))), 100);
  timer.unref();
  return { peak: () => peakMiB, stop: () => clearInterval(timer) };
}

function stopper(child: ChildProcess, memory: { stop(): void }): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      memory.stop();
      if (child.exitCode !== null) {
        resolve();
        return;
      }
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
}

/** Waits until grpc.health.v1 says SERVING. */
async function waitUntilServing(address: string, timeoutMs = 30_000): Promise<void> {
  await eventually(async () => ((await healthStatus(address)) === 'SERVING' ? true : undefined), timeoutMs, `${address} SERVING`);
}

/** Builds the services' production bundles (cached by Nx when nothing changed). */
export function buildServices(): void {
  execFileSync('npx', ['nx', 'run-many', '-t', 'build', '--outputStyle=static'], { cwd: ROOT, stdio: 'ignore' });
}

/** Starts one of the services from its production bundle as its own process, the way `npm start` does. */
export async function startServiceProcess(
  name: 'patient-svc' | 'vitals-svc' | 'audit-svc' | 'analytics-svc',
  env: Record<string, string>,
): Promise<ServerProcess> {
  const port = await freePort();
  const portVariable = `${name.replace('-svc', '').toUpperCase()}_SVC_PORT`;
  // BENCH_CPU_PROFILE_DIR=<dir>: each service writes a V8 CPU profile there when it stops.
  const profiling = process.env.BENCH_CPU_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE_DIR}`] : [];
  // BENCH_SERVICE_NODE_FLAGS='--trace-gc ...': more Node flags for the services (not the bench itself).
  const extraFlags = process.env.BENCH_SERVICE_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...profiling, ...extraFlags, ...SERVICE_PROCESS_ARGUMENTS], {
    cwd: `${ROOT}apps/${name}`,
    env: { ...process.env, ...env, [portVariable]: String(port), GRPC_HOST: '127.0.0.1', SERVICE_NAME: name, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const address = `127.0.0.1:${port}`;
  await waitUntilServing(address);
  const memory = watchMemory(child);
  return { address, pid: child.pid as number, peakRssMiB: memory.peak, stop: stopper(child, memory) };
}

/** Starts the floor server (floorServer.ts) of `spec` as its own process. */
export async function startFloorProcess(spec: FloorSpec): Promise<ServerProcess> {
  const directory = mkdtempSync(join(tmpdir(), 'bench-floor-'));
  const specFile = join(directory, 'spec.json');
  writeFileSync(specFile, JSON.stringify(spec));
  const child = spawn(process.execPath, ['--import', 'tsx', `${ROOT}bench/src/floorServer.ts`, specFile], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    child.once('exit', (code) => reject(new Error(`floor server exited with ${code}`)));
  });
  const memory = watchMemory(child);
  const stop = stopper(child, memory);
  return {
    address: `127.0.0.1:${port}`,
    pid: child.pid as number,
    peakRssMiB: memory.peak,
    stop: () => stop().finally(() => rmSync(directory, { recursive: true, force: true })),
  };
}

/** A raw grpc-js unary caller: the same client cost for the baseline and the services. */
export function unaryCaller<Request, Response>(
  address: string,
  path: string,
  encode: (request: Request) => Uint8Array,
  decode: (bytes: Uint8Array) => Response,
  token?: string,
): { call(request: Request): Promise<Response>; close(): void } {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (token) {
    metadata.set('authorization', `Bearer ${token}`);
  }
  return {
    call: (request) =>
      new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          path,
          (value: Request) => Buffer.from(encode(value)),
          (bytes: Buffer) => decode(bytes),
          request,
          metadata,
          (error, response) => (error ? reject(error) : resolve(response as Response)),
        );
      }),
    close: () => client.close(),
  };
}
