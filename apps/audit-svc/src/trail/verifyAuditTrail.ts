import type { auditV1 } from '@clinical/contracts';
import { sql } from '@clinical/db';
import { PermissionDeniedError } from '@clinical/errors';
import { accessibleSites, FieldValidator, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import type { AuditSettings } from '../auditSettings.js';
import { sealPendingEvents } from './chainSealer.js';
import { verifyChain } from './verifyChain.js';

/** An int64 request field: its value, or undefined for 0; violations accumulate in `v`. */
export function positionOf(v: FieldValidator, field: string, value: string): bigint | undefined {
  if (!/^-?\d{1,19}$/.test(value)) {
    v.add(field, 'must be an integer');
    return undefined;
  }
  const position = BigInt(value);
  if (position < 0n) {
    v.add(field, 'must not be negative');
    return undefined;
  }
  return position === 0n ? undefined : position;
}

/**
 * VerifyAuditTrail: seals what has committed, then recomputes the chain over
 * one consistent snapshot of the trail, read by binary COPY on
 * AUDIT_VERIFY_CONNECTIONS connections side by side and hashed in a worker
 * thread (see verifyChain). Needs a token for every site: it reads every
 * event.
 */
export function verifyAuditTrailHandler(runtime: ServiceRuntime, settings: AuditSettings) {
  return async function verifyAuditTrail(
    request: auditV1.VerifyAuditTrailRequest,
    context: HandlerContext,
  ): Promise<auditV1.VerifyAuditTrailResponse> {
    const v = new FieldValidator();
    const start = positionOf(v, 'start_sequence_number', request.startSequenceNumber);
    const end = positionOf(v, 'end_sequence_number', request.endSequenceNumber);
    if (start !== undefined && end !== undefined && end <= start) {
      v.add('end_sequence_number', 'must be after start_sequence_number');
    }
    v.throwIfInvalid();
    if (accessibleSites(context.principal)) {
      throw new PermissionDeniedError('verifying the audit trail needs access to every site');
    }
    // Chain what has committed up to now, so that the check covers it.
    await sealPendingEvents(runtime.pool, settings.sealBatchSize, { waitForOtherSealers: true });
    return runtime.pool.transaction(async (transaction) => {
      // One consistent, read-only snapshot for the small queries and, exported, for the readers.
      await transaction.query(sql.unsafe`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`);
      // The event_seq bounds of a range of millions of positions take longer than an ordinary statement may.
      await transaction.query(sql.unsafe`SET LOCAL statement_timeout = '600s'`);
      return verifyChain(transaction, {
        start,
        end,
        batchSize: settings.verifyBatchSize,
        signal: context.signal,
        databaseUrl: runtime.config.databaseUrl,
        connections: settings.verifyConnections,
      });
    });
  };
}
