import { createHash, type Hash } from 'node:crypto';
import { vitalsV1 } from '@clinical/contracts';
import { claimRequestId, saveIdempotentResponse, withAuditedClient, type RequestIdentity } from '@clinical/db';
import { InvalidArgumentError } from '@clinical/errors';
import { tracer } from '@clinical/telemetry';
import { auditContextOf, FieldValidator, type HandlerContext } from '@clinical/server-kit';
import { throwIfAborted } from 'abort-controller-x';
import { ingestionError } from './ingestionErrors.js';
import type { IngestionDependencies } from './ingestionPool.js';
import { ReadingsWriter } from './readingsWriter.js';
import { ReadingViolations } from './readingViolations.js';
import type { StreamVitalsMessage } from './streamVitalsMessage.js';
import { checkReading, emptyCheckedReading, emptyReadingFields, MAX_READINGS_PER_MESSAGE } from './validateReading.js';
import { writeVitalId } from './vitalId.js';
import { readingRetryText } from './vitalRecord.js';

/** How long a half-closed stream waits for a reset that would cancel it before it commits. */
export const HALF_CLOSE_GRACE_MS = 50;

/** Readings buffered before a COPY: one statement (and one audit event per patient) per chunk. */
export const STREAM_CHUNK_READINGS = 5_000;

/** Where each reading's vital_id is made before the writer copies it into its row. */
const vitalId = Buffer.alloc(16);
/** Each reading as decoded, then as checked, filled in turn: shared by every stream, as acceptMessage never awaits. */
const fields = emptyReadingFields();
const checked = emptyCheckedReading();

/**
 * StreamVitals: one transaction for the whole stream. Each message is
 * validated as it arrives (indexes count from the start of the stream) and
 * its readings are written in COPY chunks; the stream is read only as fast as
 * the database takes it (grpc-js flow control), so memory stays flat however
 * long it is. Only the client's half-close commits: a cancellation, a
 * deadline or any error rolls everything back. With a request_id, a retry
 * of a committed stream writes nothing and returns the first response (after
 * checking, by hash, that it carried the same readings); while a stream with
 * that id is still running, ABORTED.
 */
export function streamVitalsHandler(dependencies: IngestionDependencies) {
  return async function streamVitals(
    requests: AsyncIterable<StreamVitalsMessage>,
    context: HandlerContext,
  ): Promise<vitalsV1.StreamVitalsResponse> {
    const messages = requests[Symbol.asyncIterator]();
    const first = await messages.next();
    throwIfAborted(context.signal);
    if (first.done) {
      throw new InvalidArgumentError({ field: 'readings', description: 'the stream carried no readings' });
    }
    const requestId = first.value.requestId;
    const v = new FieldValidator();
    v.uuid('request_id', requestId, false);
    v.throwIfInvalid();
    const identity: RequestIdentity | undefined = requestId
      ? { scope: `VitalsService/StreamVitals:${context.principal.sub}`, requestId: requestId.toLowerCase() }
      : undefined;

    try {
      return await withAuditedClient(dependencies.ingestionPool, auditContextOf(context, { requestId }), async (client) => {
        const stored = identity ? await claimRequestId(client, identity, 'abort') : undefined;
        // A replay is read and checked like the first stream, but not written.
        const writer = stored ? undefined : new ReadingsWriter(client, context.principal);
        const hash = identity ? createHash('sha256') : undefined;
        let accepted = 0;
        let chunk = 0;
        // At most one COPY in flight: the next message is validated and encoded while
        // PostgreSQL writes the previous chunk, and is not read before that chunk is done.
        let inFlight: Promise<unknown> | undefined;
        const flush = async () => {
          await inFlight;
          inFlight = undefined;
          if (!writer || writer.pending === 0) {
            return;
          }
          chunk += 1;
          const span = tracer.startSpan('VitalsService/StreamVitals chunk', {
            attributes: { 'vitals.chunk': chunk, 'vitals.readings': writer.pending },
          });
          inFlight = writer.flush().finally(() => span.end());
          // Handled when awaited; marked now so that a failure is never an unhandled rejection.
          inFlight.catch(() => {});
        };

        try {
          for (let message = first.value; ; ) {
            throwIfAborted(context.signal);
            accepted = acceptMessage(message, requestId, accepted, writer, hash);
            if (writer && writer.pending >= STREAM_CHUNK_READINGS) {
              await flush();
            }
            const next = await messages.next();
            if (next.done) {
              break;
            }
            message = next.value;
          }
          // Node clients (grpc-js) cancel by half-closing and then resetting the stream a moment
          // later, so a half-close alone does not prove the client still wants the stream: give a
          // reset the time to arrive (while the last chunk is written) before committing.
          await Promise.all([flush().then(() => inFlight), cancellationGrace(context.signal)]);
          throwIfAborted(context.signal);
        } finally {
          // Never roll back (or commit) under a COPY still running on the connection.
          await inFlight?.catch(() => {});
        }

        const response: vitalsV1.StreamVitalsResponse = { acceptedCount: String(accepted) };
        if (identity && hash) {
          const requestHash = hash.digest();
          if (stored) {
            if (!stored.requestHash.equals(requestHash)) {
              throw new InvalidArgumentError({ field: 'request_id', description: 'was already used for a different stream' });
            }
            return vitalsV1.StreamVitalsResponse.decode(stored.response);
          }
          await saveIdempotentResponse(client, identity, requestHash, vitalsV1.StreamVitalsResponse.encode(response).finish());
        }
        return response;
      });
    } catch (error) {
      throw ingestionError(error);
    }
  };
}

/** Resolves after HALF_CLOSE_GRACE_MS, or as soon as the call is cancelled. */
function cancellationGrace(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, HALF_CLOSE_GRACE_MS);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Validates one message and queues its readings; returns the count of
 * readings accepted so far.
 * @throws InvalidArgumentError naming readings by their index in the stream.
 */
function acceptMessage(
  message: StreamVitalsMessage,
  requestId: string,
  acceptedBefore: number,
  writer: ReadingsWriter | undefined,
  hash: Hash | undefined,
): number {
  if (message.requestId !== '' && message.requestId !== requestId) {
    throw new InvalidArgumentError({ field: 'request_id', description: 'must be empty or the same as in the first message' });
  }
  const count = message.readings.length;
  if (count === 0 || count > MAX_READINGS_PER_MESSAGE) {
    throw new InvalidArgumentError({
      field: 'readings',
      description: `a message must carry 1 to ${MAX_READINGS_PER_MESSAGE} readings (the one after reading ${acceptedBefore} carries ${count})`,
    });
  }
  const violations = new ReadingViolations();
  const nowMs = Date.now();
  const path = (index: number) => `readings[${acceptedBefore + index}]`;
  for (let index = 0; index < count; index += 1) {
    message.readings.read(index, fields);
    if (checkReading(violations, path, index, fields, nowMs, checked) && violations.empty) {
      hash?.update(readingRetryText(checked));
      if (writer) {
        writeVitalId(vitalId, 0, nowMs);
        writer.add(checked, vitalId);
      }
    }
  }
  violations.throwIfAny();
  return acceptedBefore + count;
}
