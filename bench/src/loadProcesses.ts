import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds } from '@clinical/testing';
import { summarize, type LoadResult, type LoadSamples } from './loadGenerator.js';
import type { LoadJob, LoadProcessMessage } from './loadProcess.js';

const LOAD_PROCESS = fileURLToPath(new URL('./loadProcess.ts', import.meta.url));

/** A load run with the CPU each watched process spent on it. */
export interface CpuMeasuredLoad extends LoadResult {
  /** CPU time per measured call of each watched process (server, database floor...), µs. */
  readonly cpuUsPerCall: Readonly<Record<string, number>>;
  /** CPU the load processes spent while measuring, in cores (1 = one core busy throughout). */
  readonly loadGeneratorCores: number;
  /** A load process was busy at least 90% of the time: the client may have set the pace, not the server. */
  readonly loadGeneratorSaturated: boolean;
}

export interface LoadProcessesOptions {
  readonly address: string;
  readonly path: string;
  readonly authorization?: string;
  /** Pre-encoded requests, sent in turn (each process takes every n-th, so that none is sent twice before all were). */
  readonly requests: readonly Uint8Array[];
  readonly concurrency: number;
  readonly ratePerSecond?: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  /** Load processes (default 2); calls in flight and the rate are split between them. */
  readonly processes?: number;
  /** Connections in all (default 4, like ghz's usual setting), split between the processes. */
  readonly connections?: number;
  /** Processes whose CPU time is read from /proc while measuring, by the name to report them under. */
  readonly watch: Readonly<Record<string, number | undefined>>;
}

function nextMessage(child: ChildProcess, type: LoadProcessMessage['type']): Promise<LoadProcessMessage> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: LoadProcessMessage) => {
      if (message.type === type) {
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(message);
      }
    };
    const onExit = (code: number | null) => reject(new Error(`load process exited with ${code} before '${type}'`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/**
 * Drives a unary method from load processes of their own (see loadProcess.ts)
 * and reads, from /proc, the CPU time the watched processes and the load
 * processes spent while measuring: the cost per call of a server whatever
 * pace the client managed, and whether the client was the bottleneck.
 */
export async function runLoadProcesses(options: LoadProcessesOptions): Promise<CpuMeasuredLoad> {
  const processes = Math.max(1, Math.min(options.processes ?? 2, options.concurrency));
  const connections = Math.max(processes, options.connections ?? 4);
  const directory = mkdtempSync(join(tmpdir(), 'bench-load-'));
  const requestsFile = join(directory, 'requests.bin');
  writeFileSync(
    requestsFile,
    Buffer.concat(
      options.requests.flatMap((request) => {
        const length = Buffer.alloc(4);
        length.writeUInt32BE(request.length);
        return [length, request];
      }),
    ),
  );
  const children = Array.from({ length: processes }, () =>
    fork(LOAD_PROCESS, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  );
  try {
    const measuring = children.map((child) => nextMessage(child, 'measuring'));
    const done = children.map((child) => nextMessage(child, 'done'));
    children.forEach((child, index) => {
      const job: LoadJob = {
        address: options.address,
        path: options.path,
        authorization: options.authorization,
        requestsFile,
        firstIndex: index,
        stride: processes,
        connections: Math.round(connections / processes),
        concurrency: Math.max(1, Math.round(options.concurrency / processes)),
        ratePerSecond: options.ratePerSecond === undefined ? undefined : options.ratePerSecond / processes,
        durationMs: options.durationMs,
        warmupMs: options.warmupMs,
      };
      child.send(job);
    });
    await Promise.all(measuring);
    const watched = Object.entries(options.watch);
    const cpuBefore = watched.map(([, pid]) => cpuSeconds(pid));
    const loadBefore = children.map((child) => cpuSeconds(child.pid));
    const startedAt = performance.now();
    const samples = (await Promise.all(done)) as Extract<LoadProcessMessage, { type: 'done' }>[];
    const seconds = (performance.now() - startedAt) / 1_000;
    const cpuAfter = watched.map(([, pid]) => cpuSeconds(pid));
    const loadCpu = children.map((child, index) => cpuSeconds(child.pid) - loadBefore[index]!);
    const result = summarize(
      samples.map((sample): LoadSamples => ({ ...sample, latenciesMs: Float64Array.from(sample.latenciesMs) })),
    );
    const perCall = (cpu: number) => (result.calls > 0 ? (cpu * 1e6) / result.calls : Number.NaN);
    return {
      ...result,
      cpuUsPerCall: Object.fromEntries(watched.map(([name], index) => [name, perCall(cpuAfter[index]! - cpuBefore[index]!)])),
      loadGeneratorCores: loadCpu.reduce((sum, cpu) => sum + cpu, 0) / seconds,
      loadGeneratorSaturated: loadCpu.some((cpu) => cpu / seconds >= 0.9),
    };
  } finally {
    for (const child of children) {
      if (child.exitCode === null) {
        child.kill('SIGKILL');
      }
    }
    rmSync(directory, { recursive: true, force: true });
  }
}
