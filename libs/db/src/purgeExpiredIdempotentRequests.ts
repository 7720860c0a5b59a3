import { sql, type DatabasePool } from 'slonik';
import { z } from 'zod';

/**
 * Removes the stored first responses of idempotent requests older than
 * `retentionHours`, after which a retry with the same request_id is treated
 * as a new request. Returns how many were removed.
 */
export async function purgeExpiredIdempotentRequests(pool: DatabasePool, retentionHours: number): Promise<number> {
  const removed = await pool.oneFirst(sql.type(z.object({ removed: z.string() }))`
    SELECT purge_expired_idempotent_requests(make_interval(hours => ${retentionHours}))::text AS removed
  `);
  return Number(removed);
}
