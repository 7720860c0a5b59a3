import { createHash } from 'node:crypto';
import { vitalsV1 } from '@clinical/contracts';
import { claimRequestId, saveIdempotentResponse, uuidText, withAuditedClient } from '@clinical/db';
import { InvalidArgumentError } from '@clinical/errors';
import { auditContextOf, canonicalRequestBytes, FieldValidator, type HandlerContext } from '@clinical/server-kit';
import { ingestionError } from './ingestionErrors.js';
import type { IngestionDependencies } from './ingestionPool.js';
import { ReadingsWriter } from './readingsWriter.js';
import { ReadingViolations } from './readingViolations.js';
import { MAX_READINGS_PER_MESSAGE, normalizeReading, type NormalizedReading } from './validateReading.js';
import { writeVitalId } from './vitalId.js';
import { recordedVitalSigns } from './vitalRecord.js';

/**
 * BatchRecordVitals: validate every reading (violations name their index),
 * then, in one transaction carrying the audit context, check the patients
 * and COPY the readings: all or none. A request_id makes a retry return the
 * first response and write nothing; a concurrent retry waits for the first.
 */
export function batchRecordVitalsHandler(dependencies: IngestionDependencies) {
  return async function batchRecordVitals(
    request: vitalsV1.BatchRecordVitalsRequest,
    context: HandlerContext,
  ): Promise<vitalsV1.BatchRecordVitalsResponse> {
    const v = new FieldValidator();
    v.uuid('request_id', request.requestId, false);
    v.count('readings', request.readings.length, { min: 1, max: MAX_READINGS_PER_MESSAGE });
    v.throwIfInvalid();
    const violations = new ReadingViolations();
    const nowMs = Date.now();
    const readings = request.readings.map((reading, index) => normalizeReading(violations, `readings[${index}]`, reading, nowMs));
    violations.throwIfAny();
    const valid = readings as NormalizedReading[];

    const identity = request.requestId
      ? { scope: `VitalsService/BatchRecordVitals:${context.principal.sub}`, requestId: request.requestId.toLowerCase() }
      : undefined;
    const requestHash = identity
      ? createHash('sha256').update(canonicalRequestBytes(vitalsV1.BatchRecordVitalsRequest, request)).digest()
      : undefined;

    try {
      return await withAuditedClient(dependencies.ingestionPool, auditContextOf(context, { requestId: request.requestId }), async (client) => {
      if (identity && requestHash) {
        const stored = await claimRequestId(client, identity, 'wait');
        if (stored) {
          if (!stored.requestHash.equals(requestHash)) {
            throw new InvalidArgumentError({ field: 'request_id', description: 'was already used for a different request' });
          }
          return vitalsV1.BatchRecordVitalsResponse.decode(stored.response);
        }
      }
      const writer = new ReadingsWriter(client, context.principal);
      const vitalIds = Buffer.allocUnsafe(16 * valid.length);
      valid.forEach((reading, index) => {
        writeVitalId(vitalIds, 16 * index);
        writer.add(reading, vitalIds.subarray(16 * index, 16 * index + 16));
      });
      const createTime = await writer.flush();
      const response = { readings: valid.map((reading, index) => recordedVitalSigns(reading, uuidText(vitalIds, 16 * index), createTime)) };
      if (identity && requestHash) {
        await saveIdempotentResponse(client, identity, requestHash, vitalsV1.BatchRecordVitalsResponse.encode(response).finish());
      }
      return response;
    });
    } catch (error) {
      throw ingestionError(error);
    }
  };
}
