import { monitorEventLoopDelay } from 'node:perf_hooks';
import { vitalsV1 } from '@clinical/contracts';
import * as grpc from '@grpc/grpc-js';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { checkDatabase } from './harness/checks.js';
import { startMixedLoad } from './harness/load.js';
import { cpuSeconds, residentMiB } from '@clinical/testing';
import { OVERLOAD_MS } from './harness/profile.js';
import { quantile, runClosedLoop, runOpenLoop } from './harness/rawLoad.js';
import { report, summarizeCalls } from './harness/report.js';
import { startReliabilityStack, type ReliabilityStack } from './harness/stack.js';

/**
 * Ten times what a service sustains, for 30 s: it sheds what is past its
 * budget (UNAVAILABLE with a retry delay) instead of queueing it, so its
 * memory stays bounded and the calls it admits are answered; it is itself
 * again as soon as the flood stops.
 */
let stack: ReliabilityStack;

beforeAll(async () => {
  stack = await startReliabilityStack();
});

afterAll(async () => {
  await stack?.remove();
});

/**
 * Resident memory a service may reach under any load: its old space is
 * capped at 128 MiB and its young generation at 3 × 16 MiB
 * (SERVICE_PROCESS_ARGUMENTS); code, stacks, HTTP/2 and socket buffers take
 * the rest (about 200 MiB resident at rest, all told).
 */
const MEMORY_BOUND_MIB = 320;

/**
 * What an overloaded call may end with: answered, shed (UNAVAILABLE), or
 * refused or timed out before it reached the service's code — a stream the
 * HTTP/2 layer refuses past GRPC_MAX_CONCURRENT_STREAMS while the client
 * still counts a cancelled one (RESOURCE_EXHAUSTED, "Bandwidth exhausted"),
 * or a call still queued in a saturated process at its deadline.
 * Never INTERNAL, UNKNOWN or a dropped connection.
 */
const OVERLOAD_ANSWERS = ['DEADLINE_EXCEEDED', 'OK', 'RESOURCE_EXHAUSTED', 'UNAVAILABLE'];

describe('overload', () => {
  it('10× the sustainable rate of ListVitals for 30 s: the excess is shed with a retry delay, memory stays bounded, everything recovers', async () => {
    // Writes and reads of the mixed load go on throughout: shed writes are retried with their request_id.
    const load = await startMixedLoad(stack, { workers: 2, thinkTimeMs: 20 });
    await load.progress(200, 'to fill the tables');
    const { patient_id: patientId } = await stack.db.one(
      sql.type(z.object({ patient_id: z.string() }))`SELECT patient_id FROM vital_signs GROUP BY 1 ORDER BY count(*) DESC LIMIT 1`,
    );
    const token = await stack.token('reliability-overload', ['coordinator']);
    const target = {
      address: stack.services['vitals-svc'].address,
      method: '/clinical.vitals.v1.VitalsService/ListVitals',
      request: vitalsV1.ListVitalsRequest.encode(vitalsV1.ListVitalsRequest.fromPartial({ patientId, pageSize: 100 })).finish(),
      metadata: { authorization: `Bearer ${token}` },
      deadlineMs: 10_000,
    };

    const sustainable = await runClosedLoop({ ...target, concurrency: 16, durationMs: 5_000 });
    const vitalsPid = stack.services['vitals-svc'].pid();
    const restingMiB = residentMiB(vitalsPid);
    let peakMiB = restingMiB;
    const sampler = setInterval(() => (peakMiB = Math.max(peakMiB, residentMiB(vitalsPid))), 100);
    const overloadStartedAt = Date.now();
    const cpuBefore = cpuSeconds(vitalsPid);
    const generatorCpuBefore = process.cpuUsage();
    const generatorLag = monitorEventLoopDelay({ resolution: 10 });
    generatorLag.enable();
    const overload = await runOpenLoop({ ...target, rate: Math.ceil(10 * sustainable.rate), durationMs: OVERLOAD_MS, connections: 16 });
    const overloadCpu = cpuSeconds(vitalsPid) - cpuBefore;
    generatorLag.disable();
    const generatorCpu = process.cpuUsage(generatorCpuBefore);
    const overloadEndedAt = Date.now();
    clearInterval(sampler);
    const after = await runClosedLoop({ ...target, concurrency: 16, durationMs: 3_000 });
    await load.stop();

    const byCode = (calls: readonly { code: grpc.status }[]) =>
      calls.reduce<Record<string, number>>((counts, call) => ({ ...counts, [grpc.status[call.code]]: (counts[grpc.status[call.code]] ?? 0) + 1 }), {});
    const admitted = overload.calls.filter((call) => call.code === grpc.status.OK);
    const shed = overload.calls.filter((call) => call.code === grpc.status.UNAVAILABLE);
    const calls = summarizeCalls(load);
    const database = await checkDatabase(stack, load);
    report('overload', calls, database, {
      sustainableRatePerSecond: Math.round(sustainable.rate),
      sustainableP99Ms: Math.round(quantile(sustainable.calls.map((call) => call.latencyMs), 0.99)),
      targetRatePerSecond: overload.targetRate,
      offeredRatePerSecond: Math.round(overload.offeredRate),
      generatorBound: overload.offeredRate < 0.9 * overload.targetRate ? 'the load generator could not offer the target rate' : 'no',
      overloadCalls: byCode(overload.calls),
      failureMessages: overload.messages,
      shedWithRetryInfo: shed.filter((call) => call.retryInfo).length,
      admittedP50Ms: Math.round(quantile(admitted.map((call) => call.latencyMs), 0.5)),
      admittedP99Ms: Math.round(quantile(admitted.map((call) => call.latencyMs), 0.99)),
      serviceCpuMicrosecondsPerCall: Math.round((overloadCpu / overload.calls.length) * 1e6),
      generatorCpuSeconds: Math.round((generatorCpu.user + generatorCpu.system) / 1e5) / 10,
      generatorEventLoopP99Ms: Math.round(generatorLag.percentile(99) / 1e6),
      restingMiB: Math.round(restingMiB),
      peakMiB: Math.round(peakMiB),
      afterCalls: byCode(after.calls),
      afterRatePerSecond: Math.round(after.rate),
      overloadSeconds: (overloadEndedAt - overloadStartedAt) / 1_000,
    });

    // Shed, never failed otherwise.
    expect(Object.keys(byCode(overload.calls)).filter((code) => !OVERLOAD_ANSWERS.includes(code))).toEqual([]);
    expect(shed.length).toBeGreaterThan(0);
    expect(shed.every((call) => call.retryInfo)).toBe(true);
    expect(admitted.length).toBeGreaterThan(0);
    expect(peakMiB).toBeLessThan(MEMORY_BOUND_MIB);
    // Recovered: the same calls right after all succeed.
    expect(byCode(after.calls)).toEqual({ OK: after.calls.length });
    // The mixed load's shed calls were retried: only UNAVAILABLE failed, and the database holds each write once.
    expect(Object.keys(calls.failuresByCode).filter((code) => code !== 'UNAVAILABLE')).toEqual([]);
    expect(database.violations).toEqual([]);
  });
});
