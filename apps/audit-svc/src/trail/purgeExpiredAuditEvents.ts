import { auditV1 } from '@clinical/contracts';
import { runIdempotent, sql, withAuditContext } from '@clinical/db';
import { AbortedError, FailedPreconditionError, PermissionDeniedError } from '@clinical/errors';
import { accessibleSites, auditContextOf, FieldValidator, idempotencyKeyOf, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { z } from 'zod';
import type { AuditSettings } from '../auditSettings.js';
import { selectChainBounds } from './chainQueries.js';
import { sealPendingEvents } from './chainSealer.js';
import { verifyChain } from './verifyChain.js';

const responseCodec = {
  encode: (response: auditV1.PurgeExpiredAuditEventsResponse) => auditV1.PurgeExpiredAuditEventsResponse.encode(response).finish(),
  decode: (bytes: Uint8Array) => auditV1.PurgeExpiredAuditEventsResponse.decode(bytes),
};

const planRow = z.object({
  month_start: z.date(),
  event_count: z.string(),
  first_sequence_number: z.string(),
  last_sequence_number: z.string(),
  purge_through: z.string(),
});

const nextMonth = (start: Date) => new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1));

/**
 * PurgeExpiredAuditEvents: removes the whole months past retention that form
 * a prefix of the chain, after verifying that prefix, and leaves a new
 * anchor so that the rest still verifies. The database enforces its own
 * minimum retention whatever this service is configured with.
 */
export function purgeExpiredAuditEventsHandler(runtime: ServiceRuntime, settings: AuditSettings) {
  return async function purgeExpiredAuditEvents(
    request: auditV1.PurgeExpiredAuditEventsRequest,
    context: HandlerContext,
  ): Promise<auditV1.PurgeExpiredAuditEventsResponse> {
    const v = new FieldValidator();
    v.uuid('request_id', request.requestId, false);
    v.string('reason', request.reason, { max: 500 });
    v.throwIfInvalid();
    if (accessibleSites(context.principal)) {
      throw new PermissionDeniedError('purging the audit trail needs access to every site');
    }
    const idempotencyKey = idempotencyKeyOf(context, request, auditV1.PurgeExpiredAuditEventsRequest, 'AuditService/PurgeExpiredAuditEvents');

    // Old events still pending would hold their month back: chain them first.
    await sealPendingEvents(runtime.pool, settings.sealBatchSize, { waitForOtherSealers: true });
    return withAuditContext(runtime.pool, auditContextOf(context, request), (transaction) =>
      runIdempotent(transaction, idempotencyKey, responseCodec, async () => {
        const locked = await transaction.oneFirst(sql.type(z.object({ locked: z.boolean() }))`
          SELECT pg_try_advisory_xact_lock(hashtext('audit_purge')) AS locked
        `);
        if (!locked) {
          throw new AbortedError('another purge is running; retry when it is done');
        }
        await transaction.query(sql.unsafe`SET LOCAL statement_timeout = '600s'`);
        // The stricter of this service's retention and the database's floor.
        const cutoff = await transaction.oneFirst(sql.type(z.object({ cutoff: z.date() }))`
          SELECT least(now() - make_interval(months => ${settings.retentionMonths}),
                      now() - (SELECT minimum_retention FROM audit_retention_policy WHERE singleton)) AS cutoff
        `);
        const plan = await transaction.any(sql.type(planRow)`
          SELECT month_start, event_count, first_sequence_number, last_sequence_number, purge_through
            FROM audit_purge_plan(${cutoff.toISOString()}::timestamptz)
        `);
        const bounds = await selectChainBounds(transaction);
        const partitions = plan.map((month) => ({
          startTime: month.month_start,
          endTime: nextMonth(month.month_start),
          eventCount: month.event_count,
          firstSequenceNumber: month.first_sequence_number,
          lastSequenceNumber: month.last_sequence_number,
        }));
        const purgedEventCount = String(plan.reduce((sum, month) => sum + BigInt(month.event_count), 0n));
        const through = plan[0]?.purge_through;
        if (!through || request.validateOnly) {
          return {
            cutoffTime: cutoff,
            partitions,
            purgedEventCount,
            anchorHash: bounds.anchor_hash,
            anchorSequenceNumber: bounds.anchor_sequence,
            auditEventId: '',
          };
        }

        // What is removed must verify, and so must its link to what remains.
        const verified = await verifyChain(transaction, {
          end: BigInt(through) + 2n,
          batchSize: settings.verifyBatchSize,
          databaseUrl: runtime.config.databaseUrl,
          connections: settings.verifyConnections,
        });
        if (!verified.intact) {
          throw new FailedPreconditionError(
            `the events to purge do not verify (chain break at ${verified.firstBreak?.sequenceNumber ?? '?'}); investigate before purging`,
          );
        }
        const anchorHash = await transaction.oneFirst(sql.type(z.object({ row_hash: z.string() }))`
          SELECT encode(row_hash, 'hex') AS row_hash FROM audit_chain WHERE sequence_number = ${through}::int8
        `);
        const payload = {
          cutoff_time: cutoff.toISOString(),
          partitions: partitions.map((partition) => ({
            start_time: partition.startTime.toISOString(),
            end_time: partition.endTime.toISOString(),
            event_count: Number(partition.eventCount),
            first_sequence_number: Number(partition.firstSequenceNumber),
            last_sequence_number: Number(partition.lastSequenceNumber),
          })),
        };
        const auditEventId = await transaction.oneFirst(sql.type(z.object({ event_id: z.string() }))`
          SELECT audit_purge_prefix(${cutoff.toISOString()}::timestamptz, ${through}::int8, decode(${anchorHash}, 'hex'),
                                    ${sql.jsonb(payload)}) AS event_id
        `);
        return {
          cutoffTime: cutoff,
          partitions,
          purgedEventCount,
          anchorHash,
          anchorSequenceNumber: through,
          auditEventId,
        };
      }),
    );
  };
}
