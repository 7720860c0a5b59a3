import { randomBytes, randomUUID } from 'node:crypto';
import { analyticsV1, auditV1, patientV1, vitalsV1 } from '@clinical/contracts';
import type { ServiceName } from '@clinical/server-kit';
import { eventually, seededRandom } from '@clinical/testing';
import { ClientError, createChannel, createClient, Metadata, Status, type Channel } from 'nice-grpc';
import type { ReliabilityStack } from './stack.js';

/** What the load does: each kind a call (or, for writes, a call and its retries) of one method. */
export type OperationKind =
  | 'CreatePatient'
  | 'UpdatePatient'
  | 'GetPatient'
  | 'ListPatients'
  | 'RecordVitals'
  | 'BatchRecordVitals'
  | 'StreamVitals'
  | 'ListVitals'
  | 'ListAuditEvents'
  | 'GetSiteAnalytics';

const SERVICE_OF: Record<OperationKind, ServiceName> = {
  CreatePatient: 'patient-svc',
  UpdatePatient: 'patient-svc',
  GetPatient: 'patient-svc',
  ListPatients: 'patient-svc',
  RecordVitals: 'vitals-svc',
  BatchRecordVitals: 'vitals-svc',
  StreamVitals: 'vitals-svc',
  ListVitals: 'vitals-svc',
  ListAuditEvents: 'audit-svc',
  GetSiteAnalytics: 'analytics-svc',
};

/** Reads of patient data record an access event each (matched by trace id). */
const AUDITED_READS = new Set<OperationKind>(['GetPatient', 'ListVitals']);

/** One call on the wire: how it ended, when, and the trace id it carried. */
export interface Attempt {
  readonly code: Status;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly traceId: string;
}

/** One operation: a read, or a write with its request_id, tried until acknowledged or out of budget. */
export interface Operation {
  readonly kind: OperationKind;
  readonly service: ServiceName;
  readonly requestId?: string;
  /** The readings a vitals write carries (all marked with its request_id in device_data.op). */
  readonly readings?: number;
  readonly attempts: Attempt[];
  /** When the service acknowledged it (the attempt that succeeded ended). */
  acknowledgedAt?: number;
  /** CreatePatient: the patient it created. */
  patientId?: string;
}

/** A read that saw something other than the caller's own last acknowledged write. */
export interface StaleRead {
  readonly patientId: string;
  readonly expected: string;
  readonly seen: string;
  readonly at: number;
}

export interface LoadOptions {
  /** Concurrent callers, each its own loop over its own patients. */
  readonly workers?: number;
  readonly patientsPerWorker?: number;
  /** Per-attempt deadline. */
  readonly attemptDeadlineMs?: number;
  /** How long a write keeps retrying before the caller gives up on it. */
  readonly operationBudgetMs?: number;
  /** Relative weights of the operation kinds (absent: the default mix). */
  readonly mix?: Partial<Record<OperationKind, number>>;
  /** A pause between one caller's operations (none by default: closed loop). */
  readonly thinkTimeMs?: number;
  readonly seed?: number;
}

const DEFAULT_MIX: Record<OperationKind, number> = {
  GetPatient: 30,
  UpdatePatient: 8,
  CreatePatient: 4,
  ListPatients: 4,
  RecordVitals: 15,
  BatchRecordVitals: 8,
  StreamVitals: 3,
  ListVitals: 12,
  ListAuditEvents: 2,
  GetSiteAnalytics: 2,
};

/** Codes a well-behaved client retries (with the same request_id for a write). */
export const RETRYABLE = new Set<Status>([Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.ABORTED, Status.RESOURCE_EXHAUSTED]);

const PROTOCOL = 'PROTO-R';
const BATCH_SIZE = 50;
const STREAM_MESSAGES = 4;
const STREAM_MESSAGE_SIZE = 100;

export interface MixedLoad {
  readonly operations: readonly Operation[];
  readonly staleReads: readonly StaleRead[];
  readonly subjectPrefix: string;
  /** Acknowledged operations so far. */
  acknowledged(): number;
  /** Waits until `count` more operations than now are acknowledged (the load goes on meanwhile). */
  progress(count: number, what: string, timeoutMs?: number): Promise<void>;
  /** Stops the callers after their current operation (a write finishes its retries) and closes the channels. */
  stop(): Promise<void>;
  /** Each patient's treatment arm as its caller last saw it acknowledged (patients whose last update was given up aside). */
  expectedArms(): ReadonlyMap<string, string>;
  /**
   * Adds an operation a scenario made itself beside the callers (a stream
   * held open across a fault, say), so that the checks hold it to the same
   * account as theirs. Not counted by acknowledged() or progress().
   */
  adopt(operation: Operation): void;
}

interface PatientState {
  readonly patientId: string;
  etag: string;
  /** The last acknowledged treatment arm; undefined once an update was given up (its outcome is unknown). */
  arm: string | undefined;
}

/**
 * A mixed load of reads, writes, batches and streams on the four services,
 * from callers that do what the README tells them: a write carries a
 * request_id and is retried with it on UNAVAILABLE, DEADLINE_EXCEEDED,
 * ABORTED and RESOURCE_EXHAUSTED until it is acknowledged (or the caller's
 * budget runs out). Everything each call saw is kept for the checks.
 */
export async function startMixedLoad(stack: ReliabilityStack, options: LoadOptions = {}): Promise<MixedLoad> {
  const workers = options.workers ?? 6;
  const attemptDeadlineMs = options.attemptDeadlineMs ?? 10_000;
  const operationBudgetMs = options.operationBudgetMs ?? 120_000;
  const mix = { ...DEFAULT_MIX, ...options.mix };
  const kinds = (Object.keys(mix) as OperationKind[]).filter((kind) => mix[kind] > 0);
  const totalWeight = kinds.reduce((sum, kind) => sum + mix[kind], 0);
  const random = seededRandom(options.seed ?? 14);
  const subjectPrefix = `R${randomBytes(3).toString('hex').toUpperCase()}`;
  const token = await stack.token(`reliability-${subjectPrefix.toLowerCase()}`, ['coordinator', 'auditor']);
  const metadata = Metadata({ authorization: `Bearer ${token}` });

  const channels: Channel[] = [];
  const channelOf = (name: ServiceName) => {
    const channel = createChannel(stack.services[name].address);
    channels.push(channel);
    return channel;
  };
  const patients = createClient(patientV1.PatientServiceDefinition, channelOf('patient-svc'));
  const vitals = createClient(vitalsV1.VitalsServiceDefinition, channelOf('vitals-svc'));
  const audit = createClient(auditV1.AuditServiceDefinition, channelOf('audit-svc'));
  const analytics = createClient(analyticsV1.AnalyticsServiceDefinition, channelOf('analytics-svc'));

  const operations: Operation[] = [];
  const states: PatientState[] = [];
  const staleReads: StaleRead[] = [];
  let subjectCounter = 0;
  let stopping = false;
  let acknowledged = 0;

  /** Runs one operation: attempts until success, a non-retryable code, or (reads: one retry round) the budget. */
  async function run<T>(
    kind: OperationKind,
    call: (options: { metadata: Metadata; signal: AbortSignal }) => Promise<T>,
    write: Pick<Operation, 'requestId' | 'readings' | 'patientId'> = {},
  ): Promise<{ result?: T; operation: Operation }> {
    const operation: Operation = { kind, service: SERVICE_OF[kind], attempts: [], ...write };
    operations.push(operation);
    const budgetEnds = Date.now() + (write.requestId ? operationBudgetMs : attemptDeadlineMs);
    for (let attempt = 0; ; attempt += 1) {
      const traceId = randomBytes(16).toString('hex');
      const callMetadata = Metadata(metadata).set('traceparent', `00-${traceId}-${randomBytes(8).toString('hex')}-01`);
      const startedAt = Date.now();
      try {
        const result = await call({ metadata: callMetadata, signal: AbortSignal.timeout(attemptDeadlineMs) });
        operation.attempts.push({ code: Status.OK, startedAt, endedAt: Date.now(), traceId });
        operation.acknowledgedAt = Date.now();
        acknowledged += 1;
        return { result, operation };
      } catch (error) {
        const code = codeOf(error);
        operation.attempts.push({ code, startedAt, endedAt: Date.now(), traceId });
        // Reads are not retried past their own deadline: the next operation is the retry.
        if (!RETRYABLE.has(code) || Date.now() > budgetEnds || (!write.requestId && stopping)) {
          return { operation };
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 50 * 2 ** Math.min(attempt, 5)) * (0.5 + random())));
      }
    }
  }

  function reading(patientId: string, op: string, index: number): vitalsV1.VitalSigns {
    return vitalsV1.VitalSigns.fromPartial({
      patientId,
      measurementTime: new Date(Date.now() - 60_000 - index * 1_000),
      heartRate: 60 + (index % 40),
      systolicBp: 120,
      diastolicBp: 80,
      deviceData: { op, i: index },
    });
  }

  async function createPatient(site: string): Promise<PatientState | undefined> {
    subjectCounter += 1;
    const subjectNumber = `${subjectPrefix}-${String(subjectCounter).padStart(5, '0')}`;
    const requestId = randomUUID();
    const { result: response, operation } = await run(
      'CreatePatient',
      (callOptions) =>
        patients.createPatient(
          {
            requestId,
            patient: {
              subjectNumber,
              siteId: site,
              protocolId: PROTOCOL,
              enrollmentDate: { year: 2026, month: 1, day: 15 },
              treatmentArm: 'arm-0',
            },
          },
          callOptions,
        ),
      { requestId },
    );
    const created = response?.patient;
    if (!created) {
      return undefined;
    }
    operation.patientId = created.patientId;
    const state = { patientId: created.patientId, etag: created.etag, arm: created.treatmentArm as string | undefined };
    states.push(state);
    return state;
  }

  async function worker(index: number): Promise<void> {
    const site = index % 2 === 0 ? 'SITE-A' : 'SITE-B';
    const own: PatientState[] = [];
    while (own.length < (options.patientsPerWorker ?? 3) && !stopping) {
      const patient = await createPatient(site);
      if (patient) {
        own.push(patient);
      }
    }
    let updates = 0;
    while (!stopping) {
      const patient = own[Math.floor(random() * own.length)] as PatientState;
      let pick = random() * totalWeight;
      const kind = kinds.find((candidate) => (pick -= mix[candidate]) < 0) ?? 'GetPatient';
      switch (kind) {
        case 'CreatePatient': {
          const created = await createPatient(site);
          if (created) {
            own.push(created);
          }
          break;
        }
        case 'UpdatePatient': {
          updates += 1;
          const arm = `arm-${index}-${updates}`;
          const requestId = randomUUID();
          const { result: response } = await run(
            'UpdatePatient',
            (callOptions) =>
              patients.updatePatient(
                { requestId, patient: { patientId: patient.patientId, etag: patient.etag, treatmentArm: arm }, updateMask: ['treatment_arm'] },
                callOptions,
              ),
            { requestId, patientId: patient.patientId },
          );
          if (response?.patient) {
            patient.etag = response.patient.etag;
            patient.arm = arm;
          } else {
            // Its outcome is unknown: read the patient back to go on from what is stored.
            patient.arm = undefined;
            const { result: current } = await run('GetPatient', (callOptions) => patients.getPatient({ patientId: patient.patientId }, callOptions));
            if (current?.patient) {
              patient.etag = current.patient.etag;
              patient.arm = current.patient.treatmentArm;
            }
          }
          break;
        }
        case 'GetPatient': {
          const expected = patient.arm;
          const { result: response } = await run('GetPatient', (callOptions) => patients.getPatient({ patientId: patient.patientId }, callOptions));
          if (response?.patient && expected !== undefined && response.patient.treatmentArm !== expected) {
            staleReads.push({ patientId: patient.patientId, expected, seen: response.patient.treatmentArm, at: Date.now() });
          }
          break;
        }
        case 'ListPatients':
          await run('ListPatients', (callOptions) => patients.listPatients({ pageSize: 10, siteId: site }, callOptions));
          break;
        case 'RecordVitals': {
          const requestId = randomUUID();
          // Made once: a retry is the same request (reading() stamps the time), or the service rightly refuses its request_id.
          const single = reading(patient.patientId, requestId, 0);
          await run('RecordVitals', (callOptions) => vitals.recordVitals({ requestId, reading: single }, callOptions), {
            requestId,
            readings: 1,
          });
          break;
        }
        case 'BatchRecordVitals': {
          const requestId = randomUUID();
          const readings = Array.from({ length: BATCH_SIZE }, (_, i) => reading((own[i % own.length] as PatientState).patientId, requestId, i));
          await run('BatchRecordVitals', (callOptions) => vitals.batchRecordVitals({ requestId, readings }, callOptions), {
            requestId,
            readings: BATCH_SIZE,
          });
          break;
        }
        case 'StreamVitals': {
          const requestId = randomUUID();
          const messages = Array.from({ length: STREAM_MESSAGES }, (_, m) => ({
            requestId: m === 0 ? requestId : '',
            readings: Array.from({ length: STREAM_MESSAGE_SIZE }, (_, i) => reading(patient.patientId, requestId, m * STREAM_MESSAGE_SIZE + i)),
          }));
          await run(
            'StreamVitals',
            (callOptions) =>
              vitals.streamVitals(
                (async function* () {
                  for (const message of messages) {
                    yield message;
                    // Each message its own turn, so that a fault can land between two of them.
                    await new Promise((resolve) => setImmediate(resolve));
                  }
                })(),
                callOptions,
              ),
            { requestId, readings: STREAM_MESSAGES * STREAM_MESSAGE_SIZE },
          );
          break;
        }
        case 'ListVitals':
          await run('ListVitals', (callOptions) => vitals.listVitals({ patientId: patient.patientId, pageSize: 50 }, callOptions));
          break;
        case 'ListAuditEvents':
          await run('ListAuditEvents', (callOptions) => audit.listAuditEvents({ pageSize: 20, patientId: patient.patientId }, callOptions));
          break;
        case 'GetSiteAnalytics':
          // NOT_FOUND is an answer: the view holds the site once a refresh has seen its patients.
          await run('GetSiteAnalytics', (callOptions) =>
            analytics.getSiteAnalytics({ siteId: site, protocolId: PROTOCOL }, callOptions).catch((error: unknown) => {
              if (codeOf(error) !== Status.NOT_FOUND) {
                throw error;
              }
            }),
          );
          break;
      }
      if (options.thinkTimeMs) {
        await new Promise((resolve) => setTimeout(resolve, options.thinkTimeMs));
      }
    }
  }

  const running = Array.from({ length: workers }, (_, index) => worker(index));
  return {
    operations,
    staleReads,
    subjectPrefix,
    acknowledged: () => acknowledged,
    async progress(count, what, timeoutMs = 180_000) {
      const target = acknowledged + count;
      await eventually(async () => (acknowledged >= target ? true : undefined), timeoutMs, `${count} operations acknowledged ${what}`);
    },
    async stop() {
      stopping = true;
      await Promise.all(running);
      for (const channel of channels) {
        channel.close();
      }
    },
    expectedArms() {
      return new Map(states.filter((state) => state.arm !== undefined).map((state) => [state.patientId, state.arm as string]));
    },
    adopt(operation) {
      operations.push(operation);
    },
  };
}

export function codeOf(error: unknown): Status {
  if (error instanceof ClientError) {
    return error.code;
  }
  // An aborted signal (the attempt's deadline) ends the call on the client's side.
  if (error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError')) {
    return Status.DEADLINE_EXCEEDED;
  }
  return Status.UNKNOWN;
}

export { AUDITED_READS };
