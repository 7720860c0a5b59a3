import { sql, type DatabasePool, type DatabaseTransactionConnection } from 'slonik';

/** Who writes, and why: read by the audit triggers from `app.*` settings. */
export interface AuditContext {
  /** The principal's subject. */
  readonly userId: string;
  readonly requestId?: string;
  readonly traceId?: string;
  /** Why the change is made, when the caller said. */
  readonly reason?: string;
  readonly clientIp?: string;
}

/**
 * Runs `handler` in a transaction whose first statement sets the audit
 * context (`SET LOCAL app.user_id` and the rest, through set_config(..., true)),
 * so every trigger-written audit row names its actor, request and trace.
 * Slonik retries the whole handler on serialization failures: keep side
 * effects (cache writes, calls to other services) out of it.
 */
export async function withAuditContext<T>(
  pool: DatabasePool,
  context: AuditContext,
  handler: (transaction: DatabaseTransactionConnection) => Promise<T>,
): Promise<T> {
  return pool.transaction(async (transaction) => {
    await transaction.query(sql.unsafe`
      SELECT set_config('app.user_id', ${context.userId}, true),
             set_config('app.request_id', ${context.requestId ?? ''}, true),
             set_config('app.trace_id', ${context.traceId ?? ''}, true),
             set_config('app.reason', ${context.reason ?? ''}, true),
             set_config('app.client_ip', ${context.clientIp ?? ''}, true)
    `);
    return handler(transaction);
  });
}
