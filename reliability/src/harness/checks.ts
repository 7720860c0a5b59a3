import { auditV1 } from '@clinical/contracts';
import type { ServiceName } from '@clinical/server-kit';
import { createChannel, createClient, Metadata, Status } from 'nice-grpc';
import { sql } from 'slonik';
import { z } from 'zod';
import { eventually } from '@clinical/testing';
import { AUDITED_READS, type MixedLoad } from './load.js';
import { scrapeMetrics, sumOf } from './metrics.js';
import type { ReliabilityStack } from './stack.js';

/**
 * A service killed outright, dead by `at` (take it once the exit is seen):
 * access events of reads it acknowledged in the window before may be lost.
 * A read it answered is one whose successful attempt started before `at`;
 * its caller may read the answer only after `at` (it was still in a socket
 * buffer, or the caller's event loop was busy), so that it counts as
 * acknowledged at `at` at the latest.
 */
export interface KilledService {
  readonly service: ServiceName;
  readonly at: number;
}

export interface DatabaseFindings {
  /** Rows of this load: patients, readings, audit events of its writes, access events of its reads. */
  readonly patients: number;
  readonly readings: number;
  readonly writeAuditEvents: number;
  readonly accessEvents: number;
  /** Acknowledged audited reads whose access event is missing (all within a killed service's loss window, or a violation). */
  readonly lostAccessEvents: number;
  /** How long before the kill the earliest of them was acknowledged, in ms (0 when none was lost): how much of the window the loss took. */
  readonly lostAccessEventsSpanMs: number;
  readonly auditTrail: { readonly intact: boolean; readonly checked: number };
  /** What the database holds that contradicts what the callers were told; empty when all is well. */
  readonly violations: readonly string[];
}

const countRow = z.object({ key: z.string(), count: z.coerce.number() });

/**
 * Checks what the database holds against what the load's callers were told:
 * - every acknowledged write is there exactly once, with its audit event
 *   (matched by request_id);
 * - no write is partial: a batch or stream holds all its readings or none;
 * - each patient holds the treatment arm its caller last saw acknowledged;
 * - every acknowledged read of patient data has its access event (matched by
 *   the trace id the call carried), except reads a killed service acknowledged
 *   within `accessLossWindowMs` of its death (the documented loss window: the
 *   recorder's flush interval, plus the flush in progress);
 * - VerifyAuditTrail reports the trail intact.
 */
export async function checkDatabase(
  stack: ReliabilityStack,
  load: MixedLoad,
  options: { killed?: readonly KilledService[]; accessLossWindowMs?: number } = {},
): Promise<DatabaseFindings> {
  const violations: string[] = [];
  const operations = load.operations;
  const writes = operations.filter((operation) => operation.requestId);
  const acknowledgedWrites = writes.filter((operation) => operation.acknowledgedAt !== undefined);

  // Patients: each acknowledged create exactly once, as the caller was told.
  const patientRows = await stack.db.any(
    sql.type(z.object({ patient_id: z.string(), treatment_arm: z.string().nullable() }))`
      SELECT patient_id, treatment_arm FROM patients WHERE subject_number LIKE ${`${load.subjectPrefix}-%`}`,
  );
  const storedPatients = new Map(patientRows.map((row) => [row.patient_id, row.treatment_arm]));
  for (const operation of acknowledgedWrites.filter((candidate) => candidate.kind === 'CreatePatient')) {
    if (!operation.patientId || !storedPatients.has(operation.patientId)) {
      violations.push(`CreatePatient ${operation.requestId} was acknowledged but its patient is not stored`);
    }
  }
  for (const [patientId, arm] of load.expectedArms()) {
    if (storedPatients.get(patientId) !== arm) {
      violations.push(`patient ${patientId}: its last acknowledged update is not what is stored`);
    }
  }

  // Readings: per write (device_data.op is its request_id), all or none, and all when acknowledged.
  const vitalsWrites = writes.filter((operation) => operation.readings !== undefined);
  const readingCounts = new Map(
    (
      await stack.db.any(sql.type(countRow)`
        SELECT data_batch->>'op' AS key, count(*) AS count FROM vital_signs
        WHERE data_batch->>'op' = ANY(${sql.array(vitalsWrites.map((operation) => operation.requestId as string), 'text')})
        GROUP BY 1`)
    ).map((row) => [row.key, row.count]),
  );
  let readings = 0;
  for (const operation of vitalsWrites) {
    const stored = readingCounts.get(operation.requestId as string) ?? 0;
    readings += stored;
    if (stored !== 0 && stored !== operation.readings) {
      violations.push(`${operation.kind} ${operation.requestId}: ${stored} of its ${operation.readings} readings stored (partial or duplicated)`);
    } else if (operation.acknowledgedAt !== undefined && stored === 0) {
      violations.push(`${operation.kind} ${operation.requestId} was acknowledged but none of its readings is stored`);
    }
  }

  // The audit event of every acknowledged write, in the same transaction: matched by request_id.
  const auditedRequests = new Map(
    (
      await stack.db.any(sql.type(countRow)`
        SELECT request_id AS key, count(*) AS count FROM audit_events
        WHERE request_id = ANY(${sql.array(acknowledgedWrites.map((operation) => operation.requestId as string), 'text')})
        GROUP BY 1`)
    ).map((row) => [row.key, row.count]),
  );
  let writeAuditEvents = 0;
  for (const operation of acknowledgedWrites) {
    const events = auditedRequests.get(operation.requestId as string) ?? 0;
    writeAuditEvents += events;
    if (events === 0) {
      violations.push(`${operation.kind} ${operation.requestId} was acknowledged without an audit event`);
    }
  }

  // Access events of acknowledged reads, once the services have flushed what they hold.
  const audited = operations.filter((operation) => AUDITED_READS.has(operation.kind) && operation.acknowledgedAt !== undefined);
  const traceIds = audited.map((operation) => operation.attempts.at(-1)?.traceId as string);
  await accessEventsWritten(stack);
  const recorded = new Set(
    (
      await stack.db.any(sql.type(z.object({ trace_id: z.string() }))`
        SELECT DISTINCT trace_id FROM audit_events
        WHERE event_type = 'DATA_ACCESS' AND trace_id = ANY(${sql.array(traceIds, 'text')})`)
    ).map((row) => row.trace_id),
  );
  const windowMs = options.accessLossWindowMs ?? 1_000;
  let lostAccessEvents = 0;
  let lostAccessEventsSpanMs = 0;
  for (const operation of audited) {
    if (recorded.has(operation.attempts.at(-1)?.traceId as string)) {
      continue;
    }
    lostAccessEvents += 1;
    const acknowledgedAt = operation.acknowledgedAt as number;
    const startedAt = operation.attempts.at(-1)?.startedAt as number;
    // Answered by the killed process: started before it died (a call started later went to no process, or to its successor).
    const answeredBy = (kill: KilledService) => kill.service === operation.service && startedAt <= kill.at;
    const excused = (options.killed ?? []).some((kill) => answeredBy(kill) && kill.at - acknowledgedAt <= windowMs);
    if (!excused) {
      violations.push(`${operation.kind} acknowledged at ${new Date(acknowledgedAt).toISOString()} has no access event`);
    }
    // Measured to the first kill of its service after it: the one that lost it, if any did.
    const before = (options.killed ?? []).filter(answeredBy).map((kill) => Math.max(0, kill.at - acknowledgedAt));
    if (before.length > 0) {
      lostAccessEventsSpanMs = Math.max(lostAccessEventsSpanMs, Math.min(...before));
    }
  }

  const auditTrail = await verifyAuditTrail(stack);
  if (!auditTrail.intact) {
    violations.push(`VerifyAuditTrail: not intact after ${auditTrail.checked} events`);
  }
  for (const stale of load.staleReads) {
    violations.push(`GetPatient ${stale.patientId} at ${new Date(stale.at).toISOString()} returned an older treatment arm than its caller's last acknowledged update`);
  }
  for (const name of Object.keys(stack.services) as ServiceName[]) {
    for (const exit of stack.services[name].unexpectedExits()) {
      violations.push(`a service exited unasked: ${exit}`);
    }
  }
  return {
    patients: storedPatients.size,
    readings,
    writeAuditEvents,
    accessEvents: recorded.size,
    lostAccessEvents,
    lostAccessEventsSpanMs,
    auditTrail,
    violations,
  };
}

/**
 * Waits until no running service holds access events it has not written
 * (clinical_access_audit_pending at 0 on each): a recorder that met the
 * database away retries with a backoff of up to 5 s, and an event merely late
 * must not be counted as lost.
 */
async function accessEventsWritten(stack: ReliabilityStack): Promise<void> {
  await eventually(
    async () => {
      for (const service of Object.values(stack.services)) {
        if (service.pid() === undefined) {
          continue;
        }
        const samples = await scrapeMetrics(service);
        if (!samples.some((sample) => sample.name === 'clinical_access_audit_pending') || sumOf(samples, 'clinical_access_audit_pending') !== 0) {
          return undefined;
        }
      }
      return true;
    },
    120_000,
    'every service to have written its access events',
  );
}

/** VerifyAuditTrail through audit-svc, as an auditor. */
export async function verifyAuditTrail(stack: ReliabilityStack): Promise<{ intact: boolean; checked: number }> {
  const token = await stack.token('reliability-auditor', ['auditor']);
  const channel = createChannel(stack.services['audit-svc'].address);
  try {
    const client = createClient(auditV1.AuditServiceDefinition, channel, { '*': { metadata: Metadata({ authorization: `Bearer ${token}` }) } });
    for (let attempt = 0; ; attempt += 1) {
      try {
        const response = await client.verifyAuditTrail({}, { signal: AbortSignal.timeout(120_000) });
        return { intact: response.intact, checked: Number(response.checkedCount) };
      } catch (error) {
        // The trail is checked after the fault: a service that is still recovering is waited for.
        if (attempt >= 20 || (error as { code?: Status }).code !== Status.UNAVAILABLE) {
          throw error;
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  } finally {
    channel.close();
  }
}
