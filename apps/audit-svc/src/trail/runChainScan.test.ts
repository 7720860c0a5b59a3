import { createTestDatabase, eventually, testServices, type TestDatabase } from '@clinical/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChainScan } from './runChainScan.js';
import type { ChainScanRequest } from './scanChain.js';

let database: TestDatabase;
const clients: pg.Client[] = [];

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  clients.push(client);
  return client;
}

beforeAll(async () => {
  const { postgresUrl, templateDatabase } = testServices();
  database = await createTestDatabase(postgresUrl, templateDatabase);
});

afterAll(async () => {
  await Promise.all(clients.map((client) => client.end()));
  await database?.drop();
});

/** The backends of the scan's readers, and whether each waits on a lock. */
async function readers(admin: pg.Client): Promise<{ waiting: boolean }[]> {
  const { rows } = await admin.query<{ waiting: boolean }>(
    `SELECT wait_event_type IS NOT DISTINCT FROM 'Lock' AS waiting FROM pg_stat_activity
      WHERE application_name = 'audit-svc-verify' AND datname = current_database()`,
  );
  return rows;
}

/** A scan request over an empty chain, on a snapshot `exporter` exports. */
async function scanRequest(exporter: pg.Client, connections: number): Promise<ChainScanRequest> {
  await exporter.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
  const { rows } = await exporter.query<{ snapshot: string }>('SELECT pg_export_snapshot() AS snapshot');
  return {
    databaseUrl: database.urlAs('clinical_audit_svc'),
    snapshot: rows[0]!.snapshot,
    connections,
    first: 1,
    last: 1,
    low: 1,
    high: 10,
    batchSize: 5,
    priorHash: '0'.repeat(64),
    maxOpenRuns: 10,
  };
}

describe('runChainScan', () => {
  it('stops its worker when the call is abandoned, and the readers end with it, even while they wait', async () => {
    const admin = await connect(database.url);
    const locker = await connect(database.url);
    const exporter = await connect(database.url);
    // The readers' COPY waits for this lock: the scan stays in flight until it is abandoned.
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE');
    const controller = new AbortController();
    const scan = runChainScan(await scanRequest(exporter, 2), controller.signal);
    scan.catch(() => {});
    await eventually(async () => {
      const backends = await readers(admin);
      return backends.length === 2 && backends.some((backend) => backend.waiting) ? true : undefined;
    }, 30_000, 'the scan waiting on the lock');
    controller.abort(new Error('caller went away'));
    await expect(scan).rejects.toThrow('caller went away');
    await eventually(async () => ((await readers(admin)).length === 0 ? true : undefined), 30_000, 'the readers gone');
    await locker.query('ROLLBACK');
    await exporter.query('ROLLBACK');
  });

  it("reports PostgreSQL's refusal with its SQLSTATE", async () => {
    const exporter = await connect(database.url);
    const request = await scanRequest(exporter, 1);
    await expect(runChainScan({ ...request, snapshot: '00000003-0000001B-1' })).rejects.toMatchObject({ code: '22023' });
    await exporter.query('ROLLBACK');
  });
});
