import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { patientV1, vitalsV1 } from '@clinical/contracts';
import { createChannel, createClient, Metadata, Status, type Client } from 'nice-grpc';
import { sql } from 'slonik';
import { z } from 'zod';
import { codeOf, RETRYABLE, type Attempt, type Operation, type OperationKind } from './load.js';
import type { ReliabilityStack, ServiceProcess } from './stack.js';

/**
 * Calls a scenario makes itself, beside the mixed load, when it needs one
 * call to be in a known state at the moment of a fault: a stream held open
 * at a pause point, a batch or an update held inside its transaction (behind
 * a row lock, holdPatientRow) or at its commit (holdCommits). Their operations are
 * recorded as the load records its own (adopt them into the load to have
 * checkDatabase hold them to account), and they are retried as the load's
 * callers retry: same request_id, on the same codes.
 */
export interface ScenarioCaller {
  /** The principal's subject: request_ids are scoped to it. */
  readonly sub: string;
  readonly patients: Client<typeof patientV1.PatientServiceDefinition>;
  readonly vitals: Client<typeof vitalsV1.VitalsServiceDefinition>;
  /** Metadata with the token and a new trace id (one per attempt, as the load does). */
  attemptMetadata(): { metadata: Metadata; traceId: string };
  /** Creates a patient of its own (no other caller writes it), retried until acknowledged. */
  createPatient(siteId: string): Promise<patientV1.Patient>;
  close(): void;
}

export async function scenarioCaller(stack: ReliabilityStack, sub: string): Promise<ScenarioCaller> {
  const token = await stack.token(sub, ['coordinator']);
  const patientChannel = createChannel(stack.services['patient-svc'].address);
  const vitalsChannel = createChannel(stack.services['vitals-svc'].address);
  const caller: ScenarioCaller = {
    sub,
    patients: createClient(patientV1.PatientServiceDefinition, patientChannel),
    vitals: createClient(vitalsV1.VitalsServiceDefinition, vitalsChannel),
    attemptMetadata() {
      const traceId = randomBytes(16).toString('hex');
      return {
        metadata: Metadata({ authorization: `Bearer ${token}`, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` }),
        traceId,
      };
    },
    async createPatient(siteId) {
      const requestId = randomUUID();
      const operation = writeOperation('CreatePatient', 'patient-svc', requestId);
      const response = await untilAcknowledged(caller, operation, (options) =>
        caller.patients.createPatient(
          {
            requestId,
            patient: {
              subjectNumber: `H-${randomBytes(4).toString('hex').toUpperCase()}`,
              siteId,
              protocolId: 'PROTO-H',
              enrollmentDate: { year: 2026, month: 1, day: 15 },
            },
          },
          options,
        ),
      );
      if (!response?.patient) {
        throw new Error(`CreatePatient was not acknowledged: ${operation.attempts.map((attempt) => Status[attempt.code]).join(', ')}`);
      }
      return response.patient;
    },
    close() {
      patientChannel.close();
      vitalsChannel.close();
    },
  };
  return caller;
}

/** A write's operation record, before its first attempt. */
export function writeOperation(kind: OperationKind, service: Operation['service'], requestId: string, readings?: number): Operation {
  return { kind, service, requestId, readings, attempts: [] };
}

/**
 * Attempts `call` until it succeeds, fails with a code a client does not
 * retry, or `budgetMs` runs out, recording every attempt in `operation`
 * (as the load's callers do: backoff from 50 ms to 1 s).
 */
export async function untilAcknowledged<T>(
  caller: ScenarioCaller,
  operation: Operation,
  call: (options: { metadata: Metadata; signal: AbortSignal }) => Promise<T>,
  { attemptDeadlineMs = 30_000, budgetMs = 180_000 } = {},
): Promise<T | undefined> {
  const budgetEnds = Date.now() + budgetMs;
  for (let attempt = 0; ; attempt += 1) {
    const { metadata, traceId } = caller.attemptMetadata();
    const startedAt = Date.now();
    try {
      const result = await call({ metadata, signal: AbortSignal.timeout(attemptDeadlineMs) });
      operation.attempts.push({ code: Status.OK, startedAt, endedAt: Date.now(), traceId });
      operation.acknowledgedAt = Date.now();
      return result;
    } catch (error) {
      const code = codeOf(error);
      operation.attempts.push({ code, startedAt, endedAt: Date.now(), traceId });
      if (!RETRYABLE.has(code) || Date.now() > budgetEnds) {
        return undefined;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 50 * 2 ** Math.min(attempt, 5))));
    }
  }
}

/**
 * Readings of one write, each marked with its request_id in device_data.op
 * (as the load marks its own, so that checkDatabase finds them), measured
 * a second apart in the past.
 */
export function markedReadings(patientId: string, requestId: string, count: number, firstIndex = 0): vitalsV1.VitalSigns[] {
  const now = Date.now();
  return Array.from({ length: count }, (_, offset) => {
    const index = firstIndex + offset;
    return vitalsV1.VitalSigns.fromPartial({
      patientId,
      measurementTime: new Date(now - 60_000 - index * 1_000),
      heartRate: 60 + (index % 40),
      systolicBp: 120,
      diastolicBp: 80,
      deviceData: { op: requestId, i: index },
    });
  });
}

/** A stream's messages: `messages` of `perMessage` readings, the request_id in the first. */
export function streamMessages(patientId: string, requestId: string, messages: number, perMessage: number): vitalsV1.StreamVitalsRequest[] {
  return Array.from({ length: messages }, (_, m) => ({
    requestId: m === 0 ? requestId : '',
    readings: markedReadings(patientId, requestId, perMessage, m * perMessage),
  }));
}

/** One StreamVitals attempt held at a pause point. */
export interface HeldStream {
  /** Resolves once the messages before the pause point were handed to the channel. */
  readonly paused: Promise<void>;
  /** Lets the remaining messages go, then half-closes. */
  resume(): void;
  /** How the attempt ended (also recorded in the operation), with the response when it succeeded. */
  readonly ended: Promise<Attempt & { response?: vitalsV1.StreamVitalsResponse }>;
}

/**
 * Opens a StreamVitals attempt that sends `messages` up to `pauseAfter` and
 * then waits, neither sending nor half-closing, until resume(): the server
 * holds the stream's transaction open meanwhile, which is the state a
 * fault is meant to land in. The attempt is recorded in `operation`.
 */
export function holdStream(caller: ScenarioCaller, operation: Operation, messages: readonly vitalsV1.StreamVitalsRequest[], pauseAfter: number): HeldStream {
  let resume!: () => void;
  const resumed = new Promise<void>((resolve) => {
    resume = resolve;
  });
  let markPaused!: () => void;
  const paused = new Promise<void>((resolve) => {
    markPaused = resolve;
  });
  const { metadata, traceId } = caller.attemptMetadata();
  const startedAt = Date.now();
  async function* source() {
    for (const [index, message] of messages.entries()) {
      if (index === pauseAfter) {
        markPaused();
        await resumed;
      }
      yield message;
    }
  }
  const ended = caller.vitals.streamVitals(source(), { metadata }).then(
    (response) => {
      const attempt = { code: Status.OK, startedAt, endedAt: Date.now(), traceId };
      operation.attempts.push(attempt);
      operation.acknowledgedAt = attempt.endedAt;
      return { ...attempt, response };
    },
    (error: unknown) => {
      const attempt = { code: codeOf(error), startedAt, endedAt: Date.now(), traceId };
      operation.attempts.push(attempt);
      // A call that ended before its pause point must not leave the waiter hanging.
      markPaused();
      return attempt;
    },
  );
  // Once the call has ended the source is not read again: let a paused generator finish.
  void ended.finally(() => resume());
  return { paused, resume: () => resume(), ended };
}

/**
 * The key of the transaction advisory lock the services take on a request_id
 * while a stream or batch with it runs (libs/db claimRequestId): a scenario
 * finds the server's transaction of its own call by it. Derived as there.
 */
export function requestIdLockKey(scope: string, requestId: string): string {
  return createHash('sha256').update(`${scope}\u0000${requestId.toLowerCase()}`).digest().readBigInt64BE(0).toString();
}

const backendRow = z.object({ pid: z.number(), state: z.string().nullable(), query: z.string() });

/**
 * The database backend whose transaction holds `lockKey` (the request_id's
 * lock): its state ('active', 'idle in transaction') and its last
 * statement; undefined while no transaction holds it.
 */
export async function requestBackend(stack: ReliabilityStack, lockKey: string): Promise<z.infer<typeof backendRow> | undefined> {
  // A bigint advisory key is kept as its high half in classid and its low half in objid (objsubid 1).
  const row = await stack.db.maybeOne(sql.type(backendRow)`
    SELECT a.pid, a.state, a.query FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
       AND ((l.classid::bigint << 32) | l.objid::bigint) = ${lockKey}::bigint`);
  return row ?? undefined;
}

/** A patient's row locked (FOR UPDATE) by a transaction of the scenario's own. */
export interface HeldRow {
  /** The backend holding the lock. */
  readonly pid: number;
  /** Backends waiting for this lock now (only the scenario's own calls name the patient). */
  waiters(): Promise<number>;
  /** Ends the transaction, and with it the lock. */
  release(): Promise<void>;
}

/**
 * Locks a patient's row FOR UPDATE in a transaction of its own and keeps it
 * until release(). A vital-signs write naming the patient then COPYs its
 * readings and waits in its foreign-key check (FOR KEY SHARE on the patient):
 * its rows are written and not committed, a batch caught mid-write. An
 * UpdatePatient of the patient waits in its UPDATE.
 */
export async function holdPatientRow(stack: ReliabilityStack, patientId: string): Promise<HeldRow> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let locked!: (pid: number) => void;
  const held = new Promise<number>((resolve) => {
    locked = resolve;
  });
  const transaction = stack.db.transaction(async (connection) => {
    const pid = await connection.oneFirst(sql.type(z.object({ pid: z.number() }))`SELECT pg_backend_pid() AS pid`);
    await connection.query(sql.type(z.object({ locked: z.number() }))`SELECT 1 AS locked FROM patients WHERE patient_id = ${patientId} FOR UPDATE`);
    locked(pid);
    await released;
  });
  const pid = await Promise.race([held, transaction.then(() => Promise.reject(new Error('the row lock transaction ended early')))]);
  return {
    pid,
    async waiters() {
      return stack.db.oneFirst(sql.type(z.object({ count: z.coerce.number() }))`
        SELECT count(*) AS count FROM pg_stat_activity WHERE ${pid}::int = ANY(pg_blocking_pids(pid))`);
    },
    async release() {
      release();
      await transaction;
    },
  };
}

/** Where a service's log ends now: logLines(service, from) reads what it printed since. */
export function logOffset(service: ServiceProcess): number {
  try {
    return statSync(service.logFile).size;
  } catch {
    return 0;
  }
}

/**
 * What a service logged since `from` (a logOffset), counted by level and
 * message: pino's JSON lines by their `msg`, anything else (a crash's stack)
 * as `raw`. The services log at warn and above here, so this is what went
 * wrong, or what a shutdown says.
 */
export function logLines(service: ServiceProcess, from: number): Record<string, number> {
  const counts: Record<string, number> = {};
  const text = readFileSync(service.logFile).subarray(from).toString('utf8');
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      continue;
    }
    let key: string;
    try {
      const entry = JSON.parse(line) as { level?: number; msg?: string };
      key = `${entry.level ?? '?'} ${entry.msg ?? ''}`;
    } catch {
      key = `raw ${line.slice(0, 120)}`;
    }
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/**
 * Holds every commit in the cluster after it is durable and before it is
 * answered (or visible to others): synchronous replication to a standby that
 * does not exist. A write then waits between its commit and its answer, the
 * point where a process that dies leaves a write committed that its caller
 * was never told of. Reads go on. release() lets every held commit complete.
 */
export async function holdCommits(stack: ReliabilityStack): Promise<{ release(): Promise<void> }> {
  await stack.db.query(sql.unsafe`ALTER SYSTEM SET synchronous_standby_names = 'reliability_no_such_standby'`);
  await stack.db.query(sql.unsafe`SELECT pg_reload_conf()`);
  return {
    async release() {
      await stack.db.query(sql.unsafe`ALTER SYSTEM RESET synchronous_standby_names`);
      await stack.db.query(sql.unsafe`SELECT pg_reload_conf()`);
    },
  };
}

/**
 * Whether the transaction that updated `patientId` (the writer of the row
 * version others still see) has committed and waits to be answered, held by
 * holdCommits.
 */
export async function patientUpdateHeldAtCommit(stack: ReliabilityStack, patientId: string): Promise<boolean> {
  const held = await stack.db.oneFirst(sql.type(z.object({ held: z.boolean() }))`
    SELECT EXISTS (
      SELECT FROM patients AS p JOIN pg_stat_activity AS a ON a.backend_xid = p.xmax
       WHERE p.patient_id = ${patientId} AND a.wait_event = 'SyncRep') AS held`);
  return held;
}
