import { sql, type CommonQueryMethods } from '@clinical/db';
import { z } from 'zod';

/**
 * Exports the snapshot of `db`'s transaction for other connections to read
 * exactly what it sees (SET TRANSACTION SNAPSHOT). The transaction waits
 * while they read, and answers after them: the pool's idle-in-transaction
 * timeout must not end it meanwhile (the call's own length bounds it).
 */
export async function exportSnapshot(db: CommonQueryMethods): Promise<string> {
  await db.query(sql.unsafe`SET LOCAL idle_in_transaction_session_timeout = 0`);
  return db.oneFirst(sql.type(z.object({ snapshot: z.string() }))`SELECT pg_export_snapshot() AS snapshot`);
}
