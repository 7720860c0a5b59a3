import { databaseConnection } from '@clinical/db';
import type { ServiceConfig } from '@clinical/server-kit';
import pg from 'pg';

/** How long a stream's transaction may wait for the client's next message before PostgreSQL ends it. */
export const STREAM_IDLE_TIMEOUT_MS = 60_000;

/**
 * Plain `pg` connections for bulk ingestion (COPY, which Slonik cannot
 * issue), as the service's own role. Half the configured pool size (at least
 * two): a stream holds its connection for its whole length, and the Slonik
 * pool keeps serving everything else.
 */
export function createIngestionPool(config: ServiceConfig): pg.Pool {
  const connection = databaseConnection(config.databaseUrl);
  const pool = new pg.Pool({
    connectionString: connection.url,
    ssl: connection.ssl,
    max: Math.max(2, Math.floor(config.databasePoolSize / 2)),
    connectionTimeoutMillis: 5_000,
    statement_timeout: config.databaseStatementTimeoutMs,
    idle_in_transaction_session_timeout: STREAM_IDLE_TIMEOUT_MS,
    application_name: `${config.serviceName}-ingestion`,
  });
  // An idle connection that breaks is dropped by the pool; the error must not crash the process.
  pool.on('error', () => {});
  return pool;
}

/** What the ingestion handlers need beside the kit's runtime. */
export interface IngestionDependencies {
  readonly ingestionPool: pg.Pool;
}
