import pg from 'pg';
import { startPostgresCluster, type PostgresCluster } from './postgresCluster.js';

/** A migrated database on a PostgreSQL primary of a test's own, and a streaming standby of it. */
export interface ReplicatedDatabase {
  readonly primary: PostgresCluster;
  readonly standby: PostgresCluster;
  /** The database on the primary, as the superuser: a service's DATABASE_URL. */
  readonly primaryUrl: string;
  /** The same database on the standby: a service's DATABASE_REPLICA_URLS. */
  readonly standbyUrl: string;
  /** How many statements the standby ran that name `table`, by its own log (it logs every statement). */
  statementsOnStandby(table: string): number;
  remove(): Promise<void>;
}

/**
 * Starts a primary, creates and migrates `database` on it (`migrate` comes
 * from the caller, so that this library depends on no other), then a standby
 * by pg_basebackup -R that logs every statement it runs.
 */
export async function startReplicatedDatabase(options: {
  migrate: (options: { databaseUrl: string }) => Promise<unknown>;
  database?: string;
}): Promise<ReplicatedDatabase> {
  const database = options.database ?? 'clinical';
  const primary = await startPostgresCluster();
  try {
    const admin = new pg.Client({ connectionString: primary.url() });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    await admin.end();
    await options.migrate({ databaseUrl: primary.url(database) });
    const standby = await startPostgresCluster({ standbyOf: primary, settings: { log_statement: "'all'" } });
    return {
      primary,
      standby,
      primaryUrl: primary.url(database),
      standbyUrl: standby.url(database),
      statementsOnStandby: (table) => standby.serverLog().split(`FROM ${table}`).length - 1,
      async remove() {
        await standby.remove();
        await primary.remove();
      },
    };
  } catch (error) {
    await primary.remove();
    throw error;
  }
}
