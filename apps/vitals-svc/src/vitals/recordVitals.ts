import { vitalsV1 } from '@clinical/contracts';
import { runIdempotent, withAuditContext, type CommonQueryMethods } from '@clinical/db';
import { AbortedError, InvalidArgumentError } from '@clinical/errors';
import { auditContextOf, FieldValidator, idempotencyKeyOf, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
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
 * the patient is active and at one of the caller's sites and that carries the
 * audit context itself (the statement trigger writes the audit event in the
 * same transaction): one round trip. When nothing was inserted, a second look
 * says why. A request_id makes retries return the first response; that needs
 * a transaction (withAuditContext, the claim, the insert, the stored response).
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

    const sites = siteFilter(context.principal);
    const audit = auditContextOf(context, { requestId: request.requestId });
    const whyRefused = async (db: CommonQueryMethods): Promise<never> => {
      const access = await selectPatientAccess(db, reading.patientId);
      assertWritablePatients(context.principal, [reading.patientId], access ? [access] : []);
      // The patient changed between the two statements (for example it became active again).
      throw new AbortedError('the patient changed concurrently; retry the request');
    };

    if (!request.requestId) {
      // One statement, its own transaction: it sets the audit context, checks the patient and inserts.
      const row = await insertReading(runtime.pool, newVitalId(), reading, sites, audit);
      return { reading: toVitalSigns(row ?? (await whyRefused(runtime.pool))) };
    }
    const idempotencyKey = idempotencyKeyOf(context, request, vitalsV1.RecordVitalsRequest, 'VitalsService/RecordVitals');
    return withAuditContext(runtime.pool, audit, (transaction) =>
      runIdempotent(transaction, idempotencyKey, responseCodec, async () => {
        const row = await insertReading(transaction, newVitalId(), reading, sites);
        return { reading: toVitalSigns(row ?? (await whyRefused(transaction))) };
      }),
    );
  };
}
