import { createTestDatabase, testServices, type TestDatabase } from '@clinical/testing';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from './migrate.js';

/** An empty database (not cloned from the template): these tests run the migrations themselves. */
async function emptyDatabase(): Promise<TestDatabase> {
  return createTestDatabase(testServices().postgresUrl, 'template0');
}

async function tableNames(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
    );
    return rows.map((row) => row.table_name);
  } finally {
    await client.end();
  }
}

describe('migrate', () => {
  const databases: TestDatabase[] = [];
  afterEach(async () => {
    await Promise.all(databases.splice(0).map((database) => database.drop()));
  });

  it('applies every migration to an empty database, and a second run is a no-op', async () => {
    const database = await emptyDatabase();
    databases.push(database);

    const first = await migrate({ databaseUrl: database.url });
    expect(first.length).toBeGreaterThan(0);
    expect(await tableNames(database.url)).toEqual(
      expect.arrayContaining(['patients', 'documents', 'vital_signs', 'audit_events', 'mcp_context']),
    );

    expect(await migrate({ databaseUrl: database.url })).toEqual([]);
  });

  it('is safe when two runs race on one database: one applies, the other finds nothing to do', async () => {
    const database = await emptyDatabase();
    databases.push(database);

    const [a, b] = await Promise.all([migrate({ databaseUrl: database.url }), migrate({ databaseUrl: database.url })]);
    expect([a.length, b.length].sort()).toEqual([0, a.length + b.length]);
    expect(await tableNames(database.url)).toContain('patients');
  });

  it('is safe when several databases migrate at once (roles are cluster-wide)', async () => {
    const created = await Promise.all([emptyDatabase(), emptyDatabase(), emptyDatabase()]);
    databases.push(...created);

    const results = await Promise.all(created.map((database) => migrate({ databaseUrl: database.url })));
    for (const applied of results) {
      expect(applied.length).toBeGreaterThan(0);
    }
  });
});
