import { randomUUID } from 'node:crypto';
import type { patientV1 } from '@clinical/contracts';
import type { ServiceName } from '@clinical/server-kit';
import { eventually, healthStatus } from '@clinical/testing';
import { Status } from 'nice-grpc';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  holdCommits,
  holdPatientRow,
  holdStream,
  logLines,
  logOffset,
  markedReadings,
  patientUpdateHeldAtCommit,
  requestBackend,
  requestIdLockKey,
  scenarioCaller,
  streamMessages,
  untilAcknowledged,
  writeOperation,
} from './harness/calls.js';
import { checkDatabase } from './harness/checks.js';
import { startMixedLoad, type Attempt, type MixedLoad } from './harness/load.js';
import { scrapeMetrics, sumOf } from './harness/metrics.js';
import { report, summarizeCalls } from './harness/report.js';
import { startReliabilityStack, type ReliabilityStack } from './harness/stack.js';

/**
 * A service process that dies (SIGKILL) loses nothing a caller was told was
 * done: a stream or batch it had in flight is rolled back whole, and the
 * caller's retry with the same request_id, once the service is back, stores
 * it exactly once; a write it had committed and not yet answered is answered
 * to the retry with its first response, and nobody reads the record from
 * before it afterwards. What it loses are the access events still in its
 * recorder's buffer, within the documented window. A service asked to stop
 * (SIGTERM) says NOT_SERVING first, finishes the calls it has (a stream
 * still sending, a write waiting on a lock), flushes its access events and
 * exits 0.
 */
let stack: ReliabilityStack;

/** Stated rather than assumed: the access-event loss window below is built on it. */
const ACCESS_AUDIT_FLUSH_MS = 100;
/**
 * How long before a SIGKILL a read may have been acknowledged and still lose
 * its access event: an event waits up to one flush interval for its flush to
 * start, and that flush (or the one in progress, which it waits behind) must
 * commit before the kill. One flush is one INSERT of the events of about one
 * interval; 900 ms covers it on this shared two-core machine, where the
 * process's event loop and PostgreSQL both wait for a core. Each report
 * prints how much of the window the loss took (lostAccessEventsSpanMs).
 */
const ACCESS_LOSS_WINDOW_MS = ACCESS_AUDIT_FLUSH_MS + 900;
/** Codes a client may meet while a service is killed or stopping: all of them retried with the same request_id. */
const FAULT_CODES = ['ABORTED', 'DEADLINE_EXCEEDED', 'UNAVAILABLE'];

beforeAll(async () => {
  stack = await startReliabilityStack({
    serviceEnv: {
      ACCESS_AUDIT_FLUSH_MS: String(ACCESS_AUDIT_FLUSH_MS),
      // Scenarios hold a call inside its transaction (behind a row lock of their own) across a
      // fault: across the drain of a SIGTERM, say. The default 5 s statement timeout would end it
      // first on a machine slow enough, and the scenario would test nothing.
      DATABASE_STATEMENT_TIMEOUT_MS: '60000',
    },
  });
});

afterAll(async () => {
  await stack?.remove();
});

/** Attempts on `service` that were on the wire at `at`: started before, ended after. */
function inFlightAt(load: MixedLoad, service: ServiceName, at: number): Attempt[] {
  return load.operations
    .filter((operation) => operation.service === service)
    .flatMap((operation) => operation.attempts)
    .filter((attempt) => attempt.startedAt <= at && attempt.endedAt >= at);
}

/** Status names, counted. */
function countCodes(attempts: readonly Attempt[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const attempt of attempts) {
    const name = Status[attempt.code] ?? String(attempt.code);
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

/**
 * Health as a new client sees it, polled from now until the port is closed:
 * each change, in order (from SERVING, while the signal is still on its way,
 * to DOWN).
 */
async function healthUntilDown(address: string): Promise<string[]> {
  const seen: string[] = [];
  await eventually(
    async () => {
      const status = await healthStatus(address, 5_000);
      if (seen.at(-1) !== status) {
        seen.push(status);
      }
      return status === 'DOWN' ? true : undefined;
    },
    120_000,
    `${address} closed`,
  );
  return seen;
}

async function* each<T>(messages: readonly T[]): AsyncIterable<T> {
  yield* messages;
}

describe('services', () => {
  it('vitals-svc killed (SIGKILL) with a stream and a batch in flight: retried with their request_ids, each is stored exactly once', async () => {
    const vitals = stack.services['vitals-svc'];
    const load = await startMixedLoad(stack, { seed: 31 });
    const caller = await scenarioCaller(stack, 'reliability-held-calls');
    try {
      const streamPatient = (await caller.createPatient('SITE-H')).patientId;
      const batchPatient = (await caller.createPatient('SITE-H')).patientId;
      await load.progress(200, 'before the fault');

      // The stream: three messages of 2,000 readings, then a pause before the fourth. Past
      // STREAM_CHUNK_READINGS (5,000), so its first chunk is COPYed into the open transaction.
      const streamId = randomUUID();
      const messages = streamMessages(streamPatient, streamId, 4, 2_000);
      const stream = writeOperation('StreamVitals', 'vitals-svc', streamId, 8_000);
      load.adopt(stream);
      const held = holdStream(caller, stream, messages, 3);
      await held.paused;
      const streamKey = requestIdLockKey(`VitalsService/StreamVitals:${caller.sub}`, streamId);
      await eventually(
        async () => {
          const backend = await requestBackend(stack, streamKey);
          return backend?.state === 'idle in transaction' && backend.query.startsWith('COPY') ? true : undefined;
        },
        120_000,
        "the stream's first chunk written, its transaction waiting for the next message",
      );

      // The batch: 5,000 readings of a patient whose row the scenario holds locked, so the
      // batch COPYs them and then waits in its foreign-key check, uncommitted, until the kill.
      const row = await holdPatientRow(stack, batchPatient);
      const batchId = randomUUID();
      const batch = writeOperation('BatchRecordVitals', 'vitals-svc', batchId, 5_000);
      load.adopt(batch);
      const batchReadings = markedReadings(batchPatient, batchId, 5_000);
      const batchDone = untilAcknowledged(caller, batch, (options) => caller.vitals.batchRecordVitals({ requestId: batchId, readings: batchReadings }, options));
      try {
        await eventually(async () => ((await row.waiters()) > 0 ? true : undefined), 120_000, 'the batch waiting in its transaction');
      } catch (error) {
        await row.release();
        throw error;
      }

      const inFlightAtKill = sumOf(await scrapeMetrics(vitals), 'clinical_rpc_server_in_flight');
      const logFrom = logOffset(vitals);
      const signalledAt = Date.now();
      const exit = await vitals.kill('SIGKILL');
      const deadAt = Date.now();
      // The dead process's transactions end when PostgreSQL next reads their sockets: let the batch's go on to that.
      await row.release();
      const streamAtKill = await held.ended;

      await vitals.start();
      const restartedAt = Date.now();
      const retried = await untilAcknowledged(caller, stream, (options) => caller.vitals.streamVitals(each(messages), options));
      const batchResponse = await batchDone;
      await load.progress(200, 'after vitals-svc restarted');
      await load.stop();

      const calls = summarizeCalls(load);
      const database = await checkDatabase(stack, load, { killed: [{ service: 'vitals-svc', at: deadAt }], accessLossWindowMs: ACCESS_LOSS_WINDOW_MS });
      report('vitals-svc killed mid-stream and mid-batch', calls, database, {
        exit,
        inFlightAtKill,
        restartMs: restartedAt - deadAt,
        streamAttempts: stream.attempts.map((attempt) => Status[attempt.code]),
        batchAttempts: batch.attempts.map((attempt) => Status[attempt.code]),
        lostAccessEventsSpanMs: database.lostAccessEventsSpanMs,
        log: logLines(vitals, logFrom),
      });

      expect(exit.signal).toBe('SIGKILL');
      // Both were on the wire when the process died, and the kill ended them with a code a client retries.
      expect(streamAtKill.startedAt).toBeLessThanOrEqual(signalledAt);
      expect(streamAtKill.endedAt).toBeGreaterThanOrEqual(signalledAt);
      expect(FAULT_CODES).toContain(Status[streamAtKill.code]);
      expect(inFlightAt(load, 'vitals-svc', signalledAt).filter((attempt) => batch.attempts.includes(attempt))).toHaveLength(1);
      expect(retried?.acceptedCount).toBe('8000');
      expect(batchResponse?.readings).toHaveLength(5_000);
      expect(Object.keys(calls.failuresByCode).filter((code) => !FAULT_CODES.includes(code))).toEqual([]);
      expect(database.violations).toEqual([]);
    } finally {
      caller.close();
    }
  });

  it('patient-svc killed (SIGKILL) under load and restarted: access events lost only within the flush window, nothing else', async () => {
    const patients = stack.services['patient-svc'];
    const load = await startMixedLoad(stack, { seed: 32 });
    await load.progress(300, 'before the fault');
    const logFrom = logOffset(patients);
    const exit = await patients.kill('SIGKILL');
    // Once it is known dead: every read it answered started before this (see KilledService).
    const deadAt = Date.now();
    // As an orchestrator would: started again at once.
    await patients.start();
    const restartedAt = Date.now();
    await load.progress(300, 'after patient-svc restarted');
    await load.stop();

    const calls = summarizeCalls(load);
    const database = await checkDatabase(stack, load, { killed: [{ service: 'patient-svc', at: deadAt }], accessLossWindowMs: ACCESS_LOSS_WINDOW_MS });
    report('patient-svc killed and restarted', calls, database, {
      exit,
      restartMs: restartedAt - deadAt,
      accessLossWindowMs: ACCESS_LOSS_WINDOW_MS,
      lostAccessEvents: database.lostAccessEvents,
      lostAccessEventsSpanMs: database.lostAccessEventsSpanMs,
      log: logLines(patients, logFrom),
    });

    expect(exit.signal).toBe('SIGKILL');
    expect(Object.keys(calls.failuresByCode).filter((code) => !FAULT_CODES.includes(code))).toEqual([]);
    // Lost events outside the window, and any other contradiction, are violations.
    expect(database.violations).toEqual([]);
  });

  it('patient-svc killed (SIGKILL) with writes committed and not yet answered: each retry gets the first response, and no read after it returns the older record', async () => {
    const patients = stack.services['patient-svc'];
    const load = await startMixedLoad(stack, { seed: 37 });
    const caller = await scenarioCaller(stack, 'reliability-committed-update');
    try {
      const patient = await caller.createPatient('SITE-H');
      // Read once, so that the record from before the update is cached (as it is for any patient read often).
      const { metadata } = caller.attemptMetadata();
      await caller.patients.getPatient({ patientId: patient.patientId }, { metadata });
      await load.progress(300, 'before the fault');

      const updateId = randomUUID();
      const update = writeOperation('UpdatePatient', 'patient-svc', updateId);
      load.adopt(update);
      const logFrom = logOffset(patients);
      // Every commit in the cluster waits from here on, the load's too: patient-svc dies with
      // writes committed and unanswered, its own update among them for certain.
      const commits = await holdCommits(stack);
      const heldFrom = Date.now();
      let exit: { code: number | null; signal: NodeJS.Signals | null };
      let deadAt: number;
      let updated: ReturnType<typeof untilAcknowledged<patientV1.UpdatePatientResponse>>;
      try {
        updated = untilAcknowledged(caller, update, (options) =>
          caller.patients.updatePatient(
            { requestId: updateId, patient: { patientId: patient.patientId, etag: patient.etag, treatmentArm: 'arm-committed' }, updateMask: ['treatment_arm'] },
            options,
          ),
        );
        await eventually(async () => ((await patientUpdateHeldAtCommit(stack, patient.patientId)) ? true : undefined), 120_000, 'the update committed, its answer held');
        exit = await patients.kill('SIGKILL');
        deadAt = Date.now();
      } finally {
        await commits.release();
      }
      await patients.start();
      const response = await updated;
      // Its caller reads the patient back once told the update is done.
      const { patient: readBack } = await caller.patients.getPatient({ patientId: patient.patientId }, { metadata: caller.attemptMetadata().metadata });
      await load.progress(300, 'after patient-svc restarted');
      await load.stop();

      const calls = summarizeCalls(load);
      // Access events wait behind the held commits too: a flush in progress at the kill held events from the whole hold.
      const accessLossWindowMs = deadAt - heldFrom + ACCESS_LOSS_WINDOW_MS;
      const database = await checkDatabase(stack, load, { killed: [{ service: 'patient-svc', at: deadAt }], accessLossWindowMs });
      report('patient-svc killed between commit and answer', calls, database, {
        exit,
        commitsHeldMs: deadAt - heldFrom,
        accessLossWindowMs,
        lostAccessEventsSpanMs: database.lostAccessEventsSpanMs,
        heldUpdate: update.attempts.map((attempt) => Status[attempt.code]),
        readBack: readBack?.treatmentArm,
        log: logLines(patients, logFrom),
      });

      expect(exit.signal).toBe('SIGKILL');
      // Its first attempt died with the process; a retry was answered with what the first one committed.
      expect(FAULT_CODES).toContain(Status[update.attempts[0]?.code ?? Status.OK]);
      expect(response?.patient?.treatmentArm).toBe('arm-committed');
      expect(readBack).toEqual(response?.patient);
      expect(
        await stack.db.oneFirst(sql.type(z.object({ count: z.coerce.number() }))`SELECT count(*) AS count FROM audit_events WHERE request_id = ${updateId}`),
      ).toBe(1);
      expect(Object.keys(calls.failuresByCode).filter((code) => !FAULT_CODES.includes(code))).toEqual([]);
      // Exactly once (one audit event per request_id), and no caller read an arm older than its acknowledged update.
      expect(database.violations).toEqual([]);
    } finally {
      caller.close();
    }
  });

  it('patient-svc stopped (SIGTERM) under load: NOT_SERVING first, the calls in flight complete, exit 0', async () => {
    const patients = stack.services['patient-svc'];
    const load = await startMixedLoad(stack, { seed: 33 });
    const caller = await scenarioCaller(stack, 'reliability-draining-update');
    try {
      const patient = await caller.createPatient('SITE-H');
      await load.progress(300, 'before the signal');

      // An update held in its UPDATE (behind the scenario's row lock) from before the signal until
      // the port has closed: a call in flight across the whole drain and into the server's shutdown.
      const row = await holdPatientRow(stack, patient.patientId);
      const updateId = randomUUID();
      const update = writeOperation('UpdatePatient', 'patient-svc', updateId);
      load.adopt(update);
      const updated = untilAcknowledged(caller, update, (options) =>
        caller.patients.updatePatient(
          { requestId: updateId, patient: { patientId: patient.patientId, etag: patient.etag, treatmentArm: 'arm-held' }, updateMask: ['treatment_arm'] },
          options,
        ),
      );
      let health: string[];
      let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
      const logFrom = logOffset(patients);
      let signalledAt: number;
      try {
        await eventually(async () => ((await row.waiters()) > 0 ? true : undefined), 120_000, 'the update waiting in its transaction');
        signalledAt = Date.now();
        exited = patients.kill('SIGTERM');
        health = await healthUntilDown(patients.address);
      } finally {
        await row.release();
      }
      const updateResponse = await updated;
      const exit = await exited;
      const stoppedAt = Date.now();
      const log = logLines(patients, logFrom);
      await patients.start();
      await load.progress(300, 'after patient-svc restarted');
      await load.stop();

      const calls = summarizeCalls(load);
      const database = await checkDatabase(stack, load);
      const inFlight = inFlightAt(load, 'patient-svc', signalledAt);
      report('patient-svc stopped by SIGTERM', calls, database, {
        exit,
        health,
        stopMs: stoppedAt - signalledAt,
        heldUpdate: update.attempts.map((attempt) => Status[attempt.code]),
        inFlightAtSignal: countCodes(inFlight),
        startedWhileStopping: countCodes(
          load.operations
            .filter((operation) => operation.service === 'patient-svc')
            .flatMap((operation) => operation.attempts)
            .filter((attempt) => attempt.startedAt > signalledAt && attempt.startedAt < stoppedAt),
        ),
        log,
      });

      expect(health.filter((status) => status !== 'SERVING')[0]).toBe('NOT_SERVING');
      expect(exit).toEqual({ code: 0, signal: null });
      // The held update was on the wire from before the signal to after the port closed, and was answered once.
      expect(update.attempts.map((attempt) => Status[attempt.code])).toEqual(['OK']);
      expect(updateResponse?.patient?.treatmentArm).toBe('arm-held');
      expect(inFlight.filter((attempt) => attempt.code !== Status.OK)).toEqual([]);
      // Calls that came once the port had closed were refused (UNAVAILABLE) and retried.
      expect(Object.keys(calls.failuresByCode).filter((code) => code !== 'UNAVAILABLE')).toEqual([]);
      expect(database.violations).toEqual([]);
    } finally {
      caller.close();
    }
  });

  it('vitals-svc stopped (SIGTERM) with a stream still sending: the stream completes, exit 0', async () => {
    const vitals = stack.services['vitals-svc'];
    const load = await startMixedLoad(stack, { seed: 34 });
    const caller = await scenarioCaller(stack, 'reliability-draining-stream');
    try {
      const patient = (await caller.createPatient('SITE-H')).patientId;
      await load.progress(200, 'before the signal');

      const streamId = randomUUID();
      const messages = streamMessages(patient, streamId, 4, 100);
      const stream = writeOperation('StreamVitals', 'vitals-svc', streamId, 400);
      load.adopt(stream);
      const held = holdStream(caller, stream, messages, 2);
      await held.paused;
      // The server has the stream (its transaction holds the request_id) before the signal.
      const streamKey = requestIdLockKey(`VitalsService/StreamVitals:${caller.sub}`, streamId);
      await eventually(async () => ((await requestBackend(stack, streamKey)) ? true : undefined), 120_000, 'the stream begun on the server');

      const logFrom = logOffset(vitals);
      const signalledAt = Date.now();
      const exited = vitals.kill('SIGTERM');
      const health = await healthUntilDown(vitals.address);
      // The port is closed: the server is past its drain and waiting for its calls. The stream sends the rest now.
      held.resume();
      const streamEnd = await held.ended;
      const exit = await exited;
      const stoppedAt = Date.now();
      const log = logLines(vitals, logFrom);
      await vitals.start();
      await load.progress(200, 'after vitals-svc restarted');
      await load.stop();

      const calls = summarizeCalls(load);
      const database = await checkDatabase(stack, load);
      const inFlight = inFlightAt(load, 'vitals-svc', signalledAt);
      report('vitals-svc stopped by SIGTERM mid-stream', calls, database, {
        exit,
        health,
        stopMs: stoppedAt - signalledAt,
        stream: { code: Status[streamEnd.code], acceptedCount: streamEnd.response?.acceptedCount },
        inFlightAtSignal: countCodes(inFlight),
        log,
      });

      expect(health.filter((status) => status !== 'SERVING')[0]).toBe('NOT_SERVING');
      expect(streamEnd.code).toBe(Status.OK);
      expect(streamEnd.response?.acceptedCount).toBe('400');
      expect(exit).toEqual({ code: 0, signal: null });
      expect(inFlight.filter((attempt) => attempt.code !== Status.OK)).toEqual([]);
      expect(Object.keys(calls.failuresByCode).filter((code) => code !== 'UNAVAILABLE')).toEqual([]);
      expect(database.violations).toEqual([]);
    } finally {
      caller.close();
    }
  });

  it('audit-svc and analytics-svc killed (SIGKILL) under load and restarted: nothing acknowledged is lost, the trail stays intact', async () => {
    const load = await startMixedLoad(stack, { seed: 35 });
    await load.progress(300, 'before the faults');
    const killed: { service: ServiceName; at: number }[] = [];
    const exits: Record<string, unknown> = {};
    const logs: Record<string, unknown> = {};
    for (const name of ['audit-svc', 'analytics-svc'] as const) {
      const service = stack.services[name];
      const logFrom = logOffset(service);
      exits[name] = await service.kill('SIGKILL');
      killed.push({ service: name, at: Date.now() });
      await service.start();
      await load.progress(200, `after ${name} restarted`);
      logs[name] = logLines(service, logFrom);
    }
    await load.stop();

    const calls = summarizeCalls(load);
    const database = await checkDatabase(stack, load, { killed, accessLossWindowMs: ACCESS_LOSS_WINDOW_MS });
    report('audit-svc and analytics-svc killed and restarted', calls, database, { exits, logs });

    expect(Object.keys(calls.failuresByCode).filter((code) => !FAULT_CODES.includes(code))).toEqual([]);
    expect(database.violations).toEqual([]);
  });

  it('audit-svc and analytics-svc stopped (SIGTERM) under load: NOT_SERVING first, the calls in flight complete, exit 0', async () => {
    const load = await startMixedLoad(stack, { seed: 36 });
    await load.progress(300, 'before the signals');
    const figures: Record<string, unknown> = {};
    const inFlight: Attempt[] = [];
    for (const name of ['audit-svc', 'analytics-svc'] as const) {
      const service = stack.services[name];
      const logFrom = logOffset(service);
      const signalledAt = Date.now();
      const exited = service.kill('SIGTERM');
      const health = await healthUntilDown(service.address);
      const exit = await exited;
      figures[name] = { exit, health, stopMs: Date.now() - signalledAt, log: logLines(service, logFrom) };
      await service.start();
      await load.progress(200, `after ${name} restarted`);
      inFlight.push(...inFlightAt(load, name, signalledAt));
      expect(health.filter((status) => status !== 'SERVING')[0]).toBe('NOT_SERVING');
      expect(exit).toEqual({ code: 0, signal: null });
    }
    await load.stop();

    const calls = summarizeCalls(load);
    const database = await checkDatabase(stack, load);
    report('audit-svc and analytics-svc stopped by SIGTERM', calls, database, { ...figures, inFlightAtSignal: countCodes(inFlight) });

    expect(inFlight.filter((attempt) => attempt.code !== Status.OK)).toEqual([]);
    expect(Object.keys(calls.failuresByCode).filter((code) => code !== 'UNAVAILABLE')).toEqual([]);
    expect(database.violations).toEqual([]);
  });
});
