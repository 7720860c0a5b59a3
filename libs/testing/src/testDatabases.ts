import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../../db/migrations', import.meta.url));
/** Test databases older than this are left over from crashed runs and dropped. */
const STALE_AFTER_MS = 6 * 3_600_000;

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

function withUser(url: string, user: string): string {
  const parsed = new URL(url);
  parsed.username = user;
  parsed.password = '';
  return parsed.toString();
}

async function withAdmin<T>(adminUrl: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

/** Name of the template for the current migrations: it changes whenever a migration does. */
function templateName(): string {
  const hash = createHash('sha256');
  for (const file of readdirSync(MIGRATIONS_DIR).sort()) {
    hash.update(file).update(readFileSync(`${MIGRATIONS_DIR}/${file}`));
  }
  return `clinical_tmpl_${hash.digest('hex').slice(0, 16)}`;
}

/**
 * Makes sure a migrated template database exists for the current migrations
 * and returns its name. Concurrent test runs serialize on an advisory lock;
 * the template only gets its final name once fully migrated.
 */
export async function createTemplateDatabase(
  adminUrl: string,
  migrate: (options: { databaseUrl: string }) => Promise<unknown>,
): Promise<string> {
  const template = templateName();
  return withAdmin(adminUrl, async (admin) => {
    await admin.query('SELECT pg_advisory_lock(hashtext($1))', [template]);
    try {
      const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [template]);
      if (!rowCount) {
        const building = `${template}_build_${randomBytes(4).toString('hex')}`;
        await admin.query(`CREATE DATABASE "${building}"`);
        await migrate({ databaseUrl: withDatabase(adminUrl, building) });
        await admin.query(`ALTER DATABASE "${building}" RENAME TO "${template}"`);
      }
      await dropStaleTestDatabases(admin);
      return template;
    } finally {
      await admin.query('SELECT pg_advisory_unlock(hashtext($1))', [template]);
    }
  });
}

async function dropStaleTestDatabases(admin: pg.Client): Promise<void> {
  const { rows } = await admin.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'ct\\_%'");
  const cutoff = Date.now() - STALE_AFTER_MS;
  for (const { datname } of rows) {
    const createdAt = Number(datname.split('_')[1]);
    if (Number.isFinite(createdAt) && createdAt < cutoff) {
      await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
  }
}

/** A fresh database for one test file, cloned from the migrated template. */
export interface TestDatabase {
  readonly name: string;
  /** Admin URL of this database (superuser: for fixtures and inspection). */
  readonly url: string;
  /** URL of this database as another role (a service's own role). */
  urlAs(role: string): string;
  /** Drops the database, closing whatever is still connected. */
  drop(): Promise<void>;
}

export async function createTestDatabase(adminUrl: string, template: string): Promise<TestDatabase> {
  const name = `ct_${Date.now()}_${randomBytes(4).toString('hex')}`;
  await withAdmin(adminUrl, (admin) => admin.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`));
  const url = withDatabase(adminUrl, name);
  return {
    name,
    url,
    urlAs: (role) => withUser(url, role),
    drop: () =>
      withAdmin(adminUrl, async (admin) => {
        await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      }),
  };
}
