import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import pg from 'pg';
import { databaseConnection } from './connectionTls.js';

/** db/migrations at the workspace root, seen from this source file: forward-only, plain SQL. */
const MIGRATIONS_DIR = fileURLToPath(new URL('../../../db/migrations', import.meta.url));

/** node-pg-migrate's own lock id, taken blocking first (it only tries, and fails when taken). */
const MIGRATION_LOCK_ID = 7241865325823964;

export interface MigrateOptions {
  /** A URL with rights to create tables and roles (the database owner or a superuser). */
  readonly databaseUrl: string;
  /** Where progress lines go; silent by default. */
  readonly log?: (message: string) => void;
  /** The migrations, when this module runs from a bundle (elsewhere than its source); db/migrations by default. */
  readonly migrationsDir?: string;
}

/**
 * Applies pending migrations in one transaction under an advisory lock. A
 * concurrent run waits for the lock, then finds nothing left to do.
 * @returns the names of the migrations applied by this run.
 */
export async function migrate(options: MigrateOptions): Promise<string[]> {
  const connection = databaseConnection(options.databaseUrl);
  const client = new pg.Client({ connectionString: connection.url, ssl: connection.ssl });
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
    const log = options.log ?? (() => {});
    const applied = await runner({
      dbClient: client,
      dir: options.migrationsDir ?? MIGRATIONS_DIR,
      direction: 'up',
      migrationsTable: 'schema_migrations',
      singleTransaction: true,
      checkOrder: true,
      lockValue: MIGRATION_LOCK_ID,
      logger: { debug: () => {}, info: log, warn: log, error: log },
    });
    return applied.map((migration) => migration.name);
  } finally {
    await client.query('SELECT pg_advisory_unlock_all()').catch(() => {});
    await client.end();
  }
}
