import { createTestDatabase, testServices, type TestDatabase } from '@clinical/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withAuditedClient } from './withAuditedClient.js';

let database: TestDatabase;
let admin: pg.Client;
let pool: pg.Pool;

beforeAll(async () => {
  const { postgresUrl, templateDatabase } = testServices();
  database = await createTestDatabase(postgresUrl, templateDatabase);
  admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  pool = new pg.Pool({ connectionString: database.urlAs('clinical_vitals_svc'), max: 2 });
  // As the services' pools do: an idle connection that breaks is the pool's to drop.
  pool.on('error', () => {});
});

afterAll(async () => {
  await pool?.end();
  await admin?.end();
  await database?.drop();
});

describe('withAuditedClient', () => {
  it('survives its connection breaking between two statements (PostgreSQL restarted): the call fails, the process goes on, the connection is dropped', async () => {
    let broken: pg.PoolClient | undefined;
    const failure = await withAuditedClient(pool, { userId: 'restart-test' }, async (client) => {
      broken = client;
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      // Terminated while no statement of its own runs, as a fast shutdown ends every session: the
      // connection emits 'error' with nothing of pg's listening (it is checked out), which, unheard,
      // would end the process.
      const ended = new Promise((resolve) => client.once('end', resolve));
      await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
      await ended;
      await client.query('SELECT 1');
    }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(Error);
    expect(broken).toBeDefined();
    // Discarded, not handed to the next caller: the pool works on with a new connection.
    const { rows } = await pool.query<{ one: number }>('SELECT 1 AS one');
    expect(rows[0]?.one).toBe(1);
    expect(pool.totalCount).toBe(1);
  });
});
