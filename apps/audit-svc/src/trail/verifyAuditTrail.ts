import type { auditV1 } from '@clinical/contracts';
import { sql, type DatabaseTransactionConnection } from '@clinical/db';
import { z } from 'zod';
import { PermissionDeniedError } from '@clinical/errors';
import { accessibleSites, FieldValidator, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import type { AuditSettings } from '../auditSettings.js';
import { sealPendingEvents } from './chainSealer.js';
import { verifyChain, type SnapshotReader } from './verifyChain.js';

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
 * one consistent snapshot of the trail, exported to as many connections as
 * AUDIT_VERIFY_CONNECTIONS so that batches are checked side by side. Needs a
 * token for every site: it reads every event.
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
      await prepareVerifyTransaction(transaction, settings.verifyConnections);
      let helpers: SnapshotReader[] = [];
      if (settings.verifyConnections > 1) {
        const snapshot = await transaction.oneFirst(sql.type(z.object({ snapshot: z.string().regex(SNAPSHOT_ID) }))`
          SELECT pg_export_snapshot() AS snapshot
        `);
        const helper: SnapshotReader = (work) =>
          runtime.pool.transaction(async (reader) => {
            await prepareVerifyTransaction(reader, settings.verifyConnections, snapshot);
            await work(reader);
          });
        helpers = Array.from({ length: settings.verifyConnections - 1 }, () => helper);
      }
      return verifyChain(transaction, { start, end, batchSize: settings.verifyBatchSize, signal: context.signal, helpers });
    });
  };
}

/** What pg_export_snapshot returns, e.g. 00000003-0000001B-1. */
const SNAPSHOT_ID = /^[0-9A-F]+-[0-9A-F]+-[0-9]+$/;

/**
 * Makes a transaction fit for verifying, before its first query: one
 * consistent, read-only snapshot (REPEATABLE READ; a helper then imports
 * the first one's), time for a whole-trail check, no hash joins. With
 * several connections checking batches side by side, each runs its
 * statements without parallel workers: the connections share the cores.
 */
async function prepareVerifyTransaction(transaction: DatabaseTransactionConnection, connections: number, snapshot?: string) {
  await transaction.query(sql.unsafe`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`);
  if (snapshot) {
    await transaction.query(sql.unsafe`SET TRANSACTION SNAPSHOT ${sql.literalValue(snapshot)}`);
  }
  // A whole-trail check takes longer than an ordinary statement may.
  await transaction.query(sql.unsafe`SET LOCAL statement_timeout = '600s'`);
  // Chain and events meet on event_seq, indexed on both sides: a merge join reads both in
  // order. Without fresh statistics (a bulk load before autovacuum ran) the planner would
  // rather hash half a million wide event rows per batch and spill them to disk.
  await transaction.query(sql.unsafe`SET LOCAL enable_hashjoin = off`);
  if (connections > 1) {
    await transaction.query(sql.unsafe`SET LOCAL max_parallel_workers_per_gather = 0`);
  }
}
