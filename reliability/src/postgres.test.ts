import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { patientV1, vitalsV1 } from '@clinical/contracts';
import { sql } from '@clinical/db';
import { eventually } from '@clinical/testing';
import { createChannel, createClient, Metadata, Status } from 'nice-grpc';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkDatabase } from './harness/checks.js';
import { codeOf, startMixedLoad as startLoad, type LoadOptions, type MixedLoad, type Operation, type OperationKind } from './harness/load.js';
import { failureCodes, recoveryMs, report, summarizeCalls } from './harness/report.js';
import { SERVICE_NAMES, startReliabilityStack, type ReliabilityStack } from './harness/stack.js';

/**
 * PostgreSQL is the truth: while it is away (restarted, stalled, or turned
 * read-only) calls fail with a status a client retries, nothing hangs past
 * its deadline, nothing crashes, and once it is back every write the callers
 * retried with their request_id is stored exactly once, with its audit event.
 */
let stack: ReliabilityStack;

/**
 * Low, so that a stall is held well past it within a short scenario: the
 * services must not wait on a statement longer than this while PostgreSQL
 * answers, and must not hang when it does not.
 */
const STATEMENT_TIMEOUT_MS = 2_000;

beforeAll(async () => {
  stack = await startReliabilityStack({ serviceEnv: { DATABASE_STATEMENT_TIMEOUT_MS: String(STATEMENT_TIMEOUT_MS) } });
});

afterAll(async () => {
  await stack?.remove();
});

/** The loads a scenario started, stopped after it even when it failed, so that the next one starts on a quiet stack. */
const loads: MixedLoad[] = [];
const startMixedLoad = async (options?: LoadOptions) => {
  const started = await startLoad(stack, options);
  let stopped: Promise<void> | undefined;
  const load: MixedLoad = { ...started, stop: () => (stopped ??= started.stop()) };
  loads.push(load);
  return load;
};

afterEach(async (context) => {
  await Promise.all(loads.splice(0).map((load) => load.stop()));
  if (context.task.result?.state === 'fail') {
    // What the services said (warnings and errors carry no PHI), for the diagnosis.
    for (const name of SERVICE_NAMES) {
      console.log(`── ${name} log (end)\n${readFileSync(stack.services[name].logFile, 'utf8').slice(-3_000)}`);
    }
  }
});

/** Failed attempts of `operations` that started at or after `from`. */
function failuresSince(operations: readonly Operation[], from: number): number {
  let failures = 0;
  for (const operation of operations) {
    failures += operation.attempts.filter((attempt) => attempt.startedAt >= from && attempt.code !== Status.OK).length;
  }
  return failures;
}

const isWrite = (operation: Operation) => operation.requestId !== undefined;

/** The processes `pid` forked (ppid from /proc/<pid>/stat: /proc/<pid>/task/<tid>/children is not in every kernel). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name may hold spaces and parentheses: the fields after it start past the last ')'.
      const [, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === pid) {
        children.push(Number(entry));
      }
    } catch {
      // Gone meanwhile.
    }
  }
  return children;
}

/**
 * SIGSTOPs the postmaster, then every process it had forked (backends,
 * background workers): the database neither answers nor refuses, as a host
 * frozen or a network path silently dropping packets would. Stopping the
 * postmaster first means it forks nothing new while its children are listed.
 */
function freezePostgres(): number[] {
  const postmaster = stack.postgres.pid();
  process.kill(postmaster, 'SIGSTOP');
  const frozen = [postmaster];
  // A backend forked just before the postmaster stopped shows up on a second listing at the latest.
  for (let found = true; found; ) {
    found = false;
    for (const child of childrenOf(postmaster)) {
      if (!frozen.includes(child)) {
        process.kill(child, 'SIGSTOP');
        frozen.push(child);
        found = true;
      }
    }
  }
  return frozen;
}

function thaw(frozen: readonly number[]): void {
  for (const pid of [...frozen].reverse()) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // A process that is gone needs no waking.
    }
  }
}

/** Runs `statements` on a connection of its own that is exempt from default_transaction_read_only. */
async function asWriter(statements: readonly ReturnType<typeof sql.unsafe>[]): Promise<void> {
  await stack.db.connect(async (connection) => {
    // Reloaded, the setting applies to the superuser's sessions too: this one opts out for itself.
    await connection.query(sql.unsafe`SET default_transaction_read_only = off`);
    for (const statement of statements) {
      await connection.query(statement);
    }
  });
}

/** Milliseconds from `from` until the first attempt that succeeded after it ended: when calls got through again. */
function firstSuccessAfter(load: MixedLoad, from: number): number | undefined {
  const ends = load.operations.flatMap((operation) =>
    operation.attempts.filter((attempt) => attempt.code === Status.OK && attempt.endedAt >= from).map((attempt) => attempt.endedAt),
  );
  return ends.length > 0 ? Math.min(...ends) - from : undefined;
}

/**
 * GetPatient and ListVitals with a session opened earlier but used for the
 * first time now: each service misses it in Redis, asks PostgreSQL, and
 * writes its last use back (which a read-only database refuses).
 */
async function readsOfAFreshSession(token: string, patientId: string): Promise<string[]> {
  const options = () => ({ metadata: Metadata({ authorization: `Bearer ${token}` }), signal: AbortSignal.timeout(30_000) });
  const patientChannel = createChannel(stack.services['patient-svc'].address);
  const vitalsChannel = createChannel(stack.services['vitals-svc'].address);
  try {
    const patients = createClient(patientV1.PatientServiceDefinition, patientChannel);
    const vitals = createClient(vitalsV1.VitalsServiceDefinition, vitalsChannel);
    const outcome = (call: Promise<unknown>) => call.then(() => 'OK', (error: unknown) => Status[codeOf(error)] ?? 'UNKNOWN');
    return [
      await outcome(patients.getPatient({ patientId }, options())),
      await outcome(vitals.listVitals({ patientId, pageSize: 10 }, options())),
    ];
  } finally {
    patientChannel.close();
    vitalsChannel.close();
  }
}

/** What PostgreSQL logged from byte `from` of its log on: the statements it refused, by what they were. */
function refusedStatements(from: number): Record<string, number> {
  const log = readFileSync(join(stack.postgres.dataDir, 'server.log')).subarray(from).toString('utf8');
  // One record per log line prefix (its timestamp): a statement's text goes on over the lines after it.
  const statements = log.split(/\n(?=\d{4}-\d{2}-\d{2} )/).filter((record) => record.includes('STATEMENT:'));
  const count = (pattern: RegExp) => statements.filter((record) => pattern.test(record)).length;
  return {
    sessionLastUseWriteBacks: count(/UPDATE sessions SET last_seen_at/),
    chainSeals: count(/audit_chain_seal_pending/),
    accessEventFlushes: count(/INSERT INTO audit_events/),
  };
}

const serverLogSize = () => statSync(join(stack.postgres.dataDir, 'server.log')).size;

/** The mixed load's callers in the read-only scenario. */
const WORKERS = 6;

const READS_ONLY: Partial<Record<OperationKind, number>> = {
  CreatePatient: 0,
  UpdatePatient: 0,
  RecordVitals: 0,
  BatchRecordVitals: 0,
  StreamVitals: 0,
};

describe('PostgreSQL', () => {
  for (const mode of ['fast', 'immediate'] as const) {
    it(`restarted under load (${mode} shutdown): calls fail with UNAVAILABLE only, recover, and every acknowledged write is stored once`, async () => {
      const load = await startMixedLoad();
      await load.progress(300, 'before the fault');
      const stoppedAt = Date.now();
      await stack.postgres.stop(mode);
      const downAt = Date.now();
      // Down until the callers have seen it: calls made while nothing listens, not only the ones cut off.
      await eventually(async () => (failuresSince(load.operations, downAt) >= 20 ? true : undefined), 120_000, 'calls failing while PostgreSQL is down');
      await stack.postgres.start();
      const returnedAt = Date.now();
      const acknowledgedAtReturn = load.acknowledged();
      await load.progress(300, 'after PostgreSQL returned');
      await load.stop();

      const calls = summarizeCalls(load);
      const database = await checkDatabase(stack, load);
      const recovery = recoveryMs(load, returnedAt);
      report(`postgres restarted (${mode} shutdown)`, calls, database, {
        downForMs: returnedAt - stoppedAt,
        failedWhileDown: summarizeCalls(load, stoppedAt, returnedAt).failuresByCode,
        failedAfterReturn: summarizeCalls(load, returnedAt).failuresByCode,
        recoveryMsAfterReturn: recovery,
        firstSuccessMsAfterReturn: firstSuccessAfter(load, returnedAt),
      });
      // Cut off, refused, or told the database is starting up: all of it is "retry later".
      expect(failureCodes(load, 0, Number.POSITIVE_INFINITY).filter((code) => code !== 'UNAVAILABLE')).toEqual([]);
      expect(failuresSince(load.operations, stoppedAt)).toBeGreaterThan(0);
      expect(load.acknowledged()).toBeGreaterThanOrEqual(acknowledgedAtReturn + 300);
      expect(database.violations).toEqual([]);
      expect(database.auditTrail.intact).toBe(true);
    });
  }

  it('stalled (postmaster and backends SIGSTOPped) past the statement timeout: calls end by their deadlines, pools recover', async () => {
    // Past the statement timeout, so that a service able to give up on its own would answer first.
    const attemptDeadlineMs = 3 * STATEMENT_TIMEOUT_MS;
    const load = await startMixedLoad({ attemptDeadlineMs });
    await load.progress(300, 'before the fault');
    const stalledAt = Date.now();
    const frozen = freezePostgres();
    let resumedAt: number;
    try {
      // Held past the statement timeout (twice over), and until a dozen attempts made meanwhile have ended (the
      // callers' deadlines are three statement timeouts): what a caller sees of a database that does not answer.
      await eventually(
        async () => (Date.now() - stalledAt > 2 * STATEMENT_TIMEOUT_MS && failuresSince(load.operations, stalledAt) >= 12 ? true : undefined),
        180_000,
        'calls ending while PostgreSQL is stalled',
      );
    } finally {
      thaw(frozen);
      resumedAt = Date.now();
    }
    const acknowledgedAtResume = load.acknowledged();
    // Nothing hangs: the load goes on, within a bounded wait.
    await load.progress(300, 'after SIGCONT', 120_000);
    await load.stop();

    const calls = summarizeCalls(load);
    const database = await checkDatabase(stack, load);
    const longestAttemptMs = Math.max(...load.operations.flatMap((operation) => operation.attempts.map((attempt) => attempt.endedAt - attempt.startedAt)));
    report('postgres stalled (SIGSTOP)', calls, database, {
      stalledForMs: resumedAt - stalledAt,
      frozenProcesses: frozen.length,
      failedWhileStalled: summarizeCalls(load, stalledAt, resumedAt).failuresByCode,
      failedAfterResume: summarizeCalls(load, resumedAt).failuresByCode,
      recoveryMsAfterResume: recoveryMs(load, resumedAt),
      firstSuccessMsAfterResume: firstSuccessAfter(load, resumedAt),
      attemptDeadlineMs,
      longestAttemptMs,
    });
    // Ended by the deadline or refused for the database, with one exception: a write's retry may find its
    // earlier attempt (given up by the caller, not by the service) still holding its request_id inside the
    // frozen database, and is told ABORTED, retryable (StreamVitals does not wait for it, by contract).
    const unexpected = load.operations.flatMap((operation) =>
      operation.attempts
        .filter((attempt) => ![Status.OK, Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED].includes(attempt.code))
        .filter((attempt) => !(isWrite(operation) && attempt.code === Status.ABORTED))
        .map((attempt) => `${operation.kind} ${Status[attempt.code]}`),
    );
    expect(unexpected).toEqual([]);
    expect(failuresSince(load.operations, stalledAt)).toBeGreaterThan(0);
    expect(load.acknowledged()).toBeGreaterThanOrEqual(acknowledgedAtResume + 300);
    expect(database.violations).toEqual([]);
    expect(database.auditTrail.intact).toBe(true);
  });

  it('turned read-only under load: writes fail with a retryable status, reads go on, and the retried writes land once it is writable', async () => {
    const load = await startMixedLoad({ workers: WORKERS });
    // Callers that only read: the mixed load's callers each end up retrying a write while nothing can be written.
    const readers = await startMixedLoad({ mix: READS_ONLY, seed: 41 });
    await load.progress(300, 'before the fault');
    // Opened now (a write), used first while read-only.
    const lateToken = await stack.token(`reliability-late-${load.subjectPrefix.toLowerCase()}`, ['coordinator']);
    const readerPatient = readers.operations.find((operation) => operation.kind === 'CreatePatient' && operation.patientId)?.patientId as string;
    const logFrom = serverLogSize();
    let readOnlyAt = 0;
    let writableAt = 0;
    let freshSessionReads: string[] = [];
    try {
      await asWriter([sql.unsafe`ALTER SYSTEM SET default_transaction_read_only = on`, sql.unsafe`SELECT pg_reload_conf()`]);
      readOnlyAt = Date.now();
      // Read-only until every caller of the mixed load is held retrying a write, and the readers have been served meanwhile.
      const readsAtReadOnly = readers.acknowledged();
      const heldWrites = () => load.operations.filter((operation) => isWrite(operation) && failuresSince([operation], readOnlyAt) > 0).length;
      await eventually(
        async () => (heldWrites() >= WORKERS && failuresSince(load.operations.filter(isWrite), readOnlyAt) >= 30 && readers.acknowledged() >= readsAtReadOnly + 300 ? true : undefined),
        180_000,
        'writes refused and reads served while read-only',
      );
      freshSessionReads = await readsOfAFreshSession(lateToken, readerPatient);
    } finally {
      await asWriter([sql.unsafe`ALTER SYSTEM RESET default_transaction_read_only`, sql.unsafe`SELECT pg_reload_conf()`]);
      writableAt = Date.now();
    }
    const refusedInBackground = refusedStatements(logFrom);
    await load.progress(300, 'after PostgreSQL is writable again');
    await Promise.all([load.stop(), readers.stop()]);

    const refusedWrites = load.operations.filter(
      (operation) => isWrite(operation) && operation.attempts.some((attempt) => attempt.code !== Status.OK && attempt.startedAt >= readOnlyAt && attempt.startedAt < writableAt),
    );
    const calls = summarizeCalls(load);
    const readerCalls = summarizeCalls(readers);
    const database = await checkDatabase(stack, load);
    const readerDatabase = await checkDatabase(stack, readers);
    report('postgres read-only', calls, database, {
      readOnlyForMs: writableAt - readOnlyAt,
      failedWhileReadOnly: summarizeCalls(load, readOnlyAt, writableAt).failuresByCode,
      writesRefusedThenRetried: refusedWrites.length,
      ofThemAcknowledged: refusedWrites.filter((operation) => operation.acknowledgedAt !== undefined).length,
      recoveryMsAfterWritable: recoveryMs(load, writableAt),
      firstSuccessMsAfterWritable: firstSuccessAfter(load, writableAt),
      freshSessionReads,
      refusedInBackground,
    });
    report('postgres read-only (readers)', readerCalls, readerDatabase, {
      readsWhileReadOnly: summarizeCalls(readers, readOnlyAt, writableAt).calls,
      failedWhileReadOnly: summarizeCalls(readers, readOnlyAt, writableAt).failuresByCode,
    });
    // An operator's state, not a server fault: never INTERNAL or UNKNOWN.
    expect(failureCodes(load, 0, Number.POSITIVE_INFINITY).filter((code) => code !== 'UNAVAILABLE' && code !== 'FAILED_PRECONDITION')).toEqual([]);
    expect(readerCalls.failuresByCode).toEqual({});
    // A session's last use that cannot be written back does not fail the read it was checked for.
    expect(freshSessionReads).toEqual(['OK', 'OK']);
    expect(summarizeCalls(readers, readOnlyAt, writableAt).calls).toBeGreaterThan(0);
    // Each write refused while read-only was retried with its request_id until it landed (exactly once: the checks).
    expect(refusedWrites.length).toBeGreaterThan(0);
    expect(refusedWrites.filter((operation) => operation.acknowledgedAt === undefined).map((operation) => operation.requestId)).toEqual([]);
    expect(database.violations).toEqual([]);
    expect(readerDatabase.violations).toEqual([]);
    expect(database.auditTrail.intact).toBe(true);
  });
});
