import { UnavailableError } from '@clinical/errors';
import type pg from 'pg';
import type { AuditContext } from './withAuditContext.js';

const ROLLBACK_TIMEOUT_MS = 5_000;

/**
 * Runs `handler` in a transaction on a plain `pg` client of `pool` (for what
 * Slonik cannot do, such as COPY), with the same audit context as
 * `withAuditContext`: right after BEGIN, `app.user_id` and the rest are set
 * with set_config(..., true), so the audit triggers name actor, request and
 * trace. Commits when `handler` resolves; rolls back when it throws, and
 * rethrows. A connection whose rollback fails is discarded, never returned to
 * the pool. Unlike Slonik's transactions this never retries: `handler` may
 * consume a one-shot source such as a client stream.
 * @throws UnavailableError when no connection can be had.
 */
export async function withAuditedClient<T>(
  pool: pg.Pool,
  context: AuditContext,
  handler: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (error) {
    throw new UnavailableError('database unavailable, retry later', { cause: error });
  }
  // pg's pool listens for a connection's 'error' only while it is idle: one checked out that breaks
  // (PostgreSQL shut down or restarted, its backend terminated), even between two statements, would
  // emit an 'error' nobody handles, and end the process. Heard here, it fails this call (its
  // statements get the error too) and the connection is discarded instead of returned.
  let broken = false;
  const onError = () => {
    broken = true;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    await client.query(
      `SELECT set_config('app.user_id', $1, true), set_config('app.request_id', $2, true),
              set_config('app.trace_id', $3, true), set_config('app.reason', $4, true),
              set_config('app.client_ip', $5, true)`,
      [context.userId, context.requestId ?? '', context.traceId ?? '', context.reason ?? '', context.clientIp ?? ''],
    );
    const result = await handler(client);
    await client.query('COMMIT');
    client.off('error', onError);
    client.release();
    return result;
  } catch (error) {
    const reusable = !broken && (await rollback(client));
    if (reusable) {
      client.off('error', onError);
    }
    // A broken connection keeps the listener: the pool ends it, and whatever it still emits is nobody's concern.
    client.release(reusable ? undefined : true);
    throw error;
  }
}

/** True when the connection is back to idle after ROLLBACK within the timeout. */
async function rollback(client: pg.PoolClient): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ROLLBACK_TIMEOUT_MS);
  });
  try {
    return await Promise.race([
      client.query('ROLLBACK').then(
        () => true,
        () => false,
      ),
      timedOut,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
