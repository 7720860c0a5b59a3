import { isIP } from 'node:net';
import { UnavailableError } from '@clinical/errors';
import { sql, type DatabasePool } from 'slonik';
import { z } from 'zod';

/**
 * One read of patient data: who read which entity of which patient, through
 * which method; or one call refused at the door (`refusal`).
 */
export interface AccessEvent {
  /** The principal's subject. */
  readonly actor: string;
  /** Fully qualified gRPC method, e.g. `/clinical.patient.v1.PatientService/GetPatient`. */
  readonly method: string;
  /** 'patient', 'document', 'vital_signs', ... */
  readonly entityType: string;
  /**
   * The entity's key, stored in entity_key, and in entity_id when it is a
   * UUID. Any text is accepted: ids read from stored data (e.g. a decision in
   * mcp_context written by SQL) are not always UUIDs.
   */
  readonly entityId: string;
  /**
   * The patient (UUID), stored in patient_id. Text that is not a UUID is kept
   * in the payload (`patient_key`) and patient_id is left NULL.
   */
  readonly patientId: string;
  readonly traceId?: string;
  readonly requestId?: string;
  readonly clientIp?: string;
  /**
   * Set when the call was refused rather than served: stored as an
   * ACCESS_DENIED event whose action is this one (entityType 'rpc',
   * entityId the method, no patient).
   */
  readonly refusal?: { readonly action: 'AUTHENTICATE' | 'AUTHORIZE'; readonly reason: string };
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
  /**
   * Told about failed flushes (no PHI: counts and error class only). Also
   * told about dropped events when `onEventDropped` is not given.
   */
  readonly onFlushError?: (error: unknown, pendingEvents: number) => void;
  /**
   * Told about each event the database refused for its data (SQLSTATE class
   * 22 or 23) even alone, and that was therefore dropped: it would otherwise
   * block every event behind it. `event` carries ids and the method, no PHI.
   */
  readonly onEventDropped?: (error: unknown, event: AccessEvent) => void;
}

export interface AccessRecorderStats {
  readonly recorded: number;
  readonly persisted: number;
  readonly pending: number;
  readonly failedFlushes: number;
  /**
   * Events dropped because the database refused their data even alone
   * (SQLSTATE class 22 or 23); each also reported to `onEventDropped`.
   * Optional in the type only so that recorders that drop nothing need not
   * state it; createAccessRecorder always does.
   */
  readonly dropped?: number;
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
const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

/** The SQLSTATE of a database error (Slonik wraps the driver's error: the code is on a cause). */
function sqlStateOf(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
      return code;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Whether the database refused a batch for the data in it (class 22: data
 * exception; class 23: integrity constraint violation): retrying the same
 * batch can never succeed. Anything else (a connection lost, a timeout, the
 * database starting up) is worth retrying as it is.
 */
function isDataError(error: unknown): boolean {
  const code = sqlStateOf(error);
  return code !== undefined && (code.startsWith('22') || code.startsWith('23'));
}

/**
 * Text PostgreSQL will take into a varchar(max) column: well-formed UTF-16, no NUL characters
 * (text cannot hold them), at most `max` characters (UTF-16 units, never
 * fewer than the code points PostgreSQL counts). A longer actor or method is
 * kept truncated rather than losing the event.
 */
function columnText(value: string | undefined, max: number): string | null {
  if (value === undefined) {
    return null;
  }
  const withoutNul = value.includes('\0') ? value.replaceAll('\0', '') : value;
  const text = withoutNul.length > max ? withoutNul.slice(0, max) : withoutNul;
  // After the cut, which can split a pair: a lone surrogate would reach PostgreSQL as a JSON escape it
  // refuses (the event dropped); as U+FFFD it is kept.
  return SURROGATE.test(text) ? text.replace(LONE_SURROGATE, '\uFFFD') : text;
}

const SURROGATE = /[\uD800-\uDFFF]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** A queued event as it was recorded. */
function accessEventOf(queued: QueuedEvent): AccessEvent {
  const { occurredAt, queuedAtMs, ...event } = queued;
  void occurredAt;
  void queuedAtMs;
  return event;
}

/** The client's address if PostgreSQL's inet takes it (no zone index), else null. */
function inetText(value: string | undefined): string | null {
  return value && isIP(value) !== 0 && !value.includes('%') ? value : null;
}

/**
 * Batches access events into one multi-row INSERT per flush, so that auditing
 * every read costs a fraction of a query per read. Events are only in memory
 * for at most about one flush interval while the database is up. A batch the
 * database cannot reach is retried whole, with backoff; a batch it refuses
 * for its data is split until the event at fault is alone, and that event is
 * dropped and reported (stats().dropped, onEventDropped), so that one bad
 * event never holds up the others until the backlog is full.
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
  const counters = { recorded: 0, persisted: 0, dropped: 0, failedFlushes: 0, maxPersistLagMs: 0 };

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

  /**
   * One INSERT for the batch, its rows sent as one JSON parameter: built by
   * JSON.stringify (native), where a parameter per column (unnest of arrays)
   * cost the service several times more CPU per event than the read it
   * audits. Ids that are not UUIDs (read from stored data, not from a
   * request) are tolerated: entity_id and patient_id are left NULL, the
   * entity's text stays in entity_key and the patient's in the payload. Text
   * columns get text they can hold (columnText).
   */
  async function writeBatch(batch: readonly QueuedEvent[]): Promise<void> {
    const uuid = (column: string) =>
      sql.fragment`(CASE WHEN ${sql.identifier(['e', column])} ~ ${UUID_PATTERN} THEN ${sql.identifier(['e', column])}::uuid END)`;
    const rows = JSON.stringify(
      batch.map((event) => ({
        entity_type: columnText(event.entityType, 50),
        entity_key: columnText(event.entityId || undefined, 200),
        patient_key: columnText(event.patientId || undefined, 200),
        user_id: columnText(event.actor, 200),
        method: columnText(event.method, 1_000),
        client_ip: inetText(event.clientIp),
        occurred_at: event.occurredAt,
        request_id: columnText(event.requestId, 100),
        trace_id: columnText(event.traceId, 64),
        refused_action: event.refusal?.action ?? null,
        reason: columnText(event.refusal?.reason, 1_000),
      })),
    );
    await options.pool.query(sql.type(z.object({}))`
      INSERT INTO audit_events (event_type, entity_type, entity_id, entity_key, patient_id, user_id,
                                action, payload, ip_address, "timestamp", request_id, trace_id, reason)
      SELECT CASE WHEN e.refused_action IS NULL THEN 'DATA_ACCESS' ELSE 'ACCESS_DENIED' END,
             e.entity_type, ${uuid('entity_key')}, coalesce(${uuid('entity_key')}::text, e.entity_key),
             ${uuid('patient_key')}, e.user_id, coalesce(e.refused_action, 'READ'),
             jsonb_build_object('method', e.method)
               || CASE WHEN e.patient_key IS NOT NULL AND ${uuid('patient_key')} IS NULL
                       THEN jsonb_build_object('patient_key', e.patient_key) ELSE '{}'::jsonb END,
             e.client_ip, e.occurred_at, e.request_id, e.trace_id, e.reason
        FROM json_to_recordset(${rows}::json) AS e(entity_type text, entity_key text, patient_key text, user_id text,
               method text, client_ip inet, occurred_at timestamptz, request_id text, trace_id text,
               refused_action text, reason text)
    `);
  }

  /** Removes the first `count` queued events, written (persisted) or dropped. */
  function settle(count: number, persisted: boolean): void {
    const first = queue[0];
    queue = queue.slice(count);
    if (persisted) {
      const now = Date.now();
      counters.persisted += count;
      counters.maxPersistLagMs = Math.max(counters.maxPersistLagMs, now - (first?.queuedAtMs ?? now));
    } else {
      counters.dropped += count;
    }
  }

  /**
   * Writes `batch`, the head of the queue. When the database refuses it for
   * its data, the halves are written separately, down to the single event at
   * fault, which is dropped and reported: one bad event must not block the
   * queue until the backlog fills and every read is refused. Other failures
   * (connection, timeout) propagate: the flush is retried as it is.
   */
  async function writeSplitting(batch: readonly QueuedEvent[]): Promise<void> {
    try {
      await writeBatch(batch);
      settle(batch.length, true);
    } catch (error) {
      if (!isDataError(error)) {
        throw error;
      }
      const [only, ...others] = batch;
      if (only && others.length === 0) {
        settle(1, false);
        if (options.onEventDropped) {
          options.onEventDropped(error, accessEventOf(only));
        } else {
          options.onFlushError?.(error, queue.length);
        }
        return;
      }
      const half = Math.ceil(batch.length / 2);
      await writeSplitting(batch.slice(0, half));
      await writeSplitting(batch.slice(half));
    }
  }

  async function drain(): Promise<void> {
    while (queue.length > 0) {
      await writeSplitting(queue.slice(0, maxBatchSize));
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
