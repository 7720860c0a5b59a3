import { vitalsV1 } from '@clinical/contracts';
import { runIdempotent, withAuditContext } from '@clinical/db';
import { AbortedError, InvalidArgumentError } from '@clinical/errors';
import { auditContextOf, FieldValidator, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { assertWritablePatients, siteFilter } from './patientAccess.js';
import { ReadingViolations } from './readingViolations.js';
import { normalizeReading } from './validateReading.js';
import { newVitalId } from './vitalId.js';
import { toVitalSigns } from './vitalRecord.js';
import { insertReading, selectPatientAccess } from './vitalsQueries.js';

const responseCodec = {
  encode: (response: vitalsV1.RecordVitalsResponse) => vitalsV1.RecordVitalsResponse.encode(response).finish(),
  decode: (bytes: Uint8Array) => vitalsV1.RecordVitalsResponse.decode(bytes),
};

/**
 * RecordVitals: validate, then one INSERT ... SELECT that only inserts when
 * the patient is active and at one of the caller's sites, in a transaction
 * carrying the audit context (the statement trigger writes the audit event).
 * When nothing was inserted, a second look says why. A request_id makes
 * retries return the first response.
 */
export function recordVitalsHandler(runtime: ServiceRuntime) {
  return async function recordVitals(
    request: vitalsV1.RecordVitalsRequest,
    context: HandlerContext,
  ): Promise<vitalsV1.RecordVitalsResponse> {
    const v = new FieldValidator();
    v.uuid('request_id', request.requestId, false);
    const violations = new ReadingViolations();
    const reading = normalizeReading(violations, 'reading', request.reading, Date.now());
    v.throwIfInvalid();
    violations.throwIfAny();
    if (!reading) {
      throw new InvalidArgumentError({ field: 'reading', description: 'is invalid' });
    }

    const idempotencyKey = request.requestId
      ? {
          scope: `VitalsService/RecordVitals:${context.principal.sub}`,
          requestId: request.requestId.toLowerCase(),
          requestBytes: vitalsV1.RecordVitalsRequest.encode({ ...request, requestId: '' }).finish(),
        }
      : undefined;
    return withAuditContext(runtime.pool, auditContextOf(context, { requestId: request.requestId }), (transaction) =>
      runIdempotent(transaction, idempotencyKey, responseCodec, async () => {
        const row = await insertReading(transaction, newVitalId(), reading, siteFilter(context.principal));
        if (!row) {
          const access = await selectPatientAccess(transaction, reading.patientId);
          assertWritablePatients(context.principal, [reading.patientId], access ? [access] : []);
          // The patient changed between the two statements (for example it became active again).
          throw new AbortedError('the patient changed concurrently; retry the request');
        }
        return { reading: toVitalSigns(row) };
      }),
    );
  };
}
