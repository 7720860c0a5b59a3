import { createPool, type DatabasePool } from 'slonik';
import { databaseConnection } from './connectionTls.js';
import { resultParserInterceptor } from './resultParserInterceptor.js';
import { typeParsers } from './typeParsers.js';

export interface DatabasePoolOptions {
  /** postgres:// URL; the user is the service's own role. Its sslmode, sslrootcert, sslcert and sslkey count as libpq's do. */
  readonly connectionUri: string;
  /** Most connections the pool opens. */
  readonly maximumPoolSize?: number;
  /** A statement running longer is cancelled by PostgreSQL. */
  readonly statementTimeoutMs?: number;
  /** A transaction idle longer is ended by PostgreSQL. */
  readonly idleInTransactionTimeoutMs?: number;
  /** Time to wait for a connection before failing. */
  readonly connectionTimeoutMs?: number;
}

/**
 * A Slonik pool whose typed queries (`sql.type(schema)`) are checked against
 * their zod schema, with timestamps as Date, dates as 'YYYY-MM-DD' strings
 * and int8 as strings. TLS as the URL says (see databaseConnection).
 * @throws DatabaseUrlError when the URL's TLS parameters cannot be honoured.
 */
export async function createDatabasePool(options: DatabasePoolOptions): Promise<DatabasePool> {
  const connection = databaseConnection(options.connectionUri);
  return createPool(connection.url, {
    ...(connection.ssl ? { ssl: connection.ssl } : {}),
    maximumPoolSize: options.maximumPoolSize ?? 10,
    statementTimeout: options.statementTimeoutMs ?? 30_000,
    idleInTransactionSessionTimeout: options.idleInTransactionTimeoutMs ?? 60_000,
    connectionTimeout: options.connectionTimeoutMs ?? 5_000,
    interceptors: [resultParserInterceptor],
    typeParsers,
    // Stack capture costs more than the query on hot paths; errors carry the SQL.
    captureStackTrace: false,
    // The services keep no session state (context is SET LOCAL, per
    // transaction), so the default DISCARD ALL on every release would be one
    // wasted round trip per query.
    resetConnection: async () => {},
  });
}
