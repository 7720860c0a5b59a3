import type { ServiceName } from '@clinical/server-kit';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDatabase } from './harness/checks.js';
import { startMixedLoad, type MixedLoad } from './harness/load.js';
import { residentMiB } from '@clinical/testing';
import { scrapeMetrics, sumOf } from './harness/metrics.js';
import { PROFILE, SOAK_MS } from './harness/profile.js';
import { quantile } from './harness/rawLoad.js';
import { report, summarizeCalls } from './harness/report.js';
import { SERVICE_NAMES, startReliabilityStack, type ReliabilityStack } from './harness/stack.js';

/**
 * Mixed load for SOAK_MS (2 minutes in CI, 10 by command): resident memory,
 * event-loop delay, pool waiters and errors sampled every 5 s, and the
 * series kept in bench/results/reliability/soak.json.
 */
let stack: ReliabilityStack;

beforeAll(async () => {
  stack = await startReliabilityStack();
});

afterAll(async () => {
  await stack?.remove();
});

const SAMPLE_EVERY_MS = 5_000;

interface Sample {
  readonly atSeconds: number;
  readonly operationsPerSecond: number;
  readonly failures: number;
  readonly services: Record<ServiceName, { rssMiB: number; eventLoopP99Ms: number; poolWaiters: number }>;
}

async function sample(load: MixedLoad, startedAt: number, previous: { at: number; acknowledged: number; failures: number }): Promise<Sample> {
  const now = Date.now();
  const failures = load.operations.reduce((sum, operation) => sum + operation.attempts.filter((attempt) => attempt.code !== Status.OK).length, 0);
  const services = {} as Sample['services'];
  for (const name of SERVICE_NAMES) {
    const metrics = await scrapeMetrics(stack.services[name]);
    services[name] = {
      rssMiB: Math.round(residentMiB(stack.services[name].pid())),
      // The runtime instrumentation samples at 10 ms resolution: an idle loop reads about 10 ms.
      eventLoopP99Ms: Math.round(sumOf(metrics, 'nodejs_eventloop_delay_p99') * 1_000 * 10) / 10,
      poolWaiters: sumOf(metrics, 'db_client_connection_pending_requests'),
    };
  }
  const acknowledged = load.acknowledged();
  const result: Sample = {
    atSeconds: Math.round((now - startedAt) / 1_000),
    operationsPerSecond: Math.round(((acknowledged - previous.acknowledged) / (now - previous.at)) * 1_000),
    failures: failures - previous.failures,
    services,
  };
  Object.assign(previous, { at: now, acknowledged, failures });
  return result;
}

const median = (values: readonly number[]) => quantile(values, 0.5);

describe('soak', () => {
  it(`mixed load for ${SOAK_MS / 60_000} minutes (${PROFILE}): memory, event-loop delay, pool waiters and errors stay flat`, async () => {
    const load = await startMixedLoad(stack, { workers: 4 });
    await load.progress(100, 'to warm up');
    const startedAt = Date.now();
    const previous = { at: startedAt, acknowledged: load.acknowledged(), failures: 0 };
    const samples: Sample[] = [];
    // Sampling is the soak's clock: one sample every SAMPLE_EVERY_MS, each waiting on the load's own progress.
    while (Date.now() - startedAt < SOAK_MS) {
      await new Promise((resolve) => setTimeout(resolve, SAMPLE_EVERY_MS));
      samples.push(await sample(load, startedAt, previous));
    }
    await load.stop();

    // Flat: the last quarter against the second (the first is warm-up).
    const quarter = Math.max(1, Math.floor(samples.length / 4));
    const second = samples.slice(quarter, 2 * quarter);
    const last = samples.slice(-quarter);
    const trend = Object.fromEntries(
      SERVICE_NAMES.map((name) => [
        name,
        {
          rssMiB: [median(second.map((s) => s.services[name].rssMiB)), median(last.map((s) => s.services[name].rssMiB))],
          eventLoopP99Ms: [median(second.map((s) => s.services[name].eventLoopP99Ms)), median(last.map((s) => s.services[name].eventLoopP99Ms))],
          poolWaiters: [median(second.map((s) => s.services[name].poolWaiters)), median(last.map((s) => s.services[name].poolWaiters))],
        },
      ]),
    );
    const calls = summarizeCalls(load);
    const database = await checkDatabase(stack, load);
    report(`soak`, calls, database, {
      profile: PROFILE,
      minutes: SOAK_MS / 60_000,
      operationsPerSecond: [median(second.map((s) => s.operationsPerSecond)), median(last.map((s) => s.operationsPerSecond))],
      secondQuarterVsLastQuarter: trend,
      samples,
    });

    expect(calls.failuresByCode).toEqual({});
    expect(database.violations).toEqual([]);
    // Memory does not climb: within 20% (and 16 MiB of allocator slack) of where it stood after warm-up.
    for (const name of SERVICE_NAMES) {
      const [before, after] = trend[name]!.rssMiB as [number, number];
      expect(after, `${name} resident memory, MiB`).toBeLessThanOrEqual(before * 1.2 + 16);
    }
  });
});
