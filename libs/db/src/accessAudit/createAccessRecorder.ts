import { UnavailableError } from '@clinical/errors';
import { sql, type DatabasePool } from 'slonik';
import { z } from 'zod';

/** One read of patient data: who read which entity of which patient, through which method. */
export interface AccessEvent {
  /** The principal's subject. */
  readonly actor: string;
  /** Fully qualified gRPC method, e.g. `/clinical.patient.v1.PatientService/GetPatient`. */
  readonly method: string;
  /** 'patient', 'document', 'vital_signs', ... */
  readonly entityType: string;
  readonly entityId: string;
  readonly patientId: string;
  readonly traceId?: string;
  readonly requestId?: string;
  readonly clientIp?: string;
}

export interface AccessRecorderOptions {
  readonly pool: DatabasePool;
  /** Longest time an event waits in memory before a flush starts: the loss window. */
  readonly flushIntervalMs?: number;
  /** Events written per INSERT. */
  readonly maxBatchSize?: number;
  /**
   * Events held while the database is unreachable. Beyond this, `record`
   * refuses (UNAVAILABLE): a read that cannot be audited is not served.
   */
  readonly maxPendingEvents?: number;
  /** Told about failed flushes (no PHI: counts and error class only). */
  readonly onFlushError?: (error: unknown, pendingEvents: number) => void;
}

export interface AccessRecorderStats {
  readonly recorded: number;
  readonly persisted: number;
  readonly pending: number;
  readonly failedFlushes: number;
  /** Longest time an event spent between `record` and its commit, in ms. */
  readonly maxPersistLagMs: number;
}

export interface AccessRecorder {
  /**
   * Queues access events; they are committed within the flush interval.
   * @throws UnavailableError when the backlog is full (the database is down).
   */
  record(events: readonly AccessEvent[]): void;
  /** Writes everything queued so far. */
  flush(): Promise<void>;
  /** Stops the timer and writes what is left; call on shutdown, before the pool ends. */
  close(): Promise<void>;
  stats(): AccessRecorderStats;
}

interface QueuedEvent extends AccessEvent {
  readonly occurredAt: Date;
  readonly queuedAtMs: number;
}

const RETRY_BACKOFF_MAX_MS = 5_000;

/**
 * Batches access events into one multi-row INSERT per flush, so that auditing
 * every read costs a fraction of a query per read. Events are only in memory
 * for at most about one flush interval while the database is up.
 */
export function createAccessRecorder(options: AccessRecorderOptions): AccessRecorder {
  const flushIntervalMs = options.flushIntervalMs ?? 100;
  const maxBatchSize = options.maxBatchSize ?? 2_000;
  const maxPendingEvents = options.maxPendingEvents ?? 100_000;
  let queue: QueuedEvent[] = [];
  let flushing: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let consecutiveFailures = 0;
  const counters = { recorded: 0, persisted: 0, failedFlushes: 0, maxPersistLagMs: 0 };

  function schedule(delayMs: number): void {
    if (timer || closed) {
      return;
    }
    timer = setTimeout(() => {
      timer = undefined;
      void flush();
    }, delayMs);
    timer.unref();
  }

  async function writeBatch(batch: readonly QueuedEvent[]): Promise<void> {
    await options.pool.query(sql.type(z.object({}))`
      INSERT INTO audit_events (event_type, entity_type, entity_id, entity_key, patient_id, user_id,
                                action, payload, ip_address, "timestamp", request_id, trace_id)
      SELECT 'DATA_ACCESS', e.entity_type, e.entity_id, e.entity_id::text, e.patient_id, e.user_id,
             'READ', jsonb_build_object('method', e.method), e.client_ip, e.occurred_at, e.request_id, e.trace_id
        FROM ${sql.unnest(
          batch.map((event) => [
            event.entityType,
            event.entityId,
            event.patientId,
            event.actor,
            event.method,
            event.clientIp ?? null,
            event.occurredAt.toISOString(),
            event.requestId ?? null,
            event.traceId ?? null,
          ]),
          ['text', 'uuid', 'uuid', 'text', 'text', 'inet', 'timestamptz', 'text', 'text'],
        )} AS e(entity_type, entity_id, patient_id, user_id, method, client_ip, occurred_at, request_id, trace_id)
    `);
  }

  async function drain(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.slice(0, maxBatchSize);
      await writeBatch(batch);
      queue = queue.slice(batch.length);
      const now = Date.now();
      counters.persisted += batch.length;
      counters.maxPersistLagMs = Math.max(counters.maxPersistLagMs, now - (batch[0]?.queuedAtMs ?? now));
    }
  }

  function flush(): Promise<void> {
    if (flushing) {
      // A flush is running; chain one more so that events queued meanwhile go too.
      return flushing.then(() => (queue.length > 0 ? flush() : undefined));
    }
    flushing = drain()
      .then(() => {
        consecutiveFailures = 0;
      })
      .catch((error: unknown) => {
        consecutiveFailures += 1;
        counters.failedFlushes += 1;
        options.onFlushError?.(error, queue.length);
        if (!closed) {
          schedule(Math.min(flushIntervalMs * 2 ** consecutiveFailures, RETRY_BACKOFF_MAX_MS));
        }
        if (closed) {
          throw error;
        }
      })
      .finally(() => {
        flushing = undefined;
      });
    return flushing;
  }

  return {
    record(events) {
      if (events.length === 0) {
        return;
      }
      if (closed) {
        throw new UnavailableError('service is shutting down');
      }
      if (queue.length + events.length > maxPendingEvents) {
        throw new UnavailableError('access audit backlog is full, retry later');
      }
      const occurredAt = new Date();
      const queuedAtMs = occurredAt.getTime();
      for (const event of events) {
        queue.push({ ...event, occurredAt, queuedAtMs });
      }
      counters.recorded += events.length;
      if (queue.length >= maxBatchSize && !flushing) {
        void flush();
      } else {
        schedule(flushIntervalMs);
      }
    },
    flush,
    async close() {
      closed = true;
      if (timer) {
        clearTimeout(timer);
        timer = undefined;
      }
      await flush();
    },
    stats() {
      return { ...counters, pending: queue.length };
    },
  };
}
