import { createHash } from 'node:crypto';
import { createTestDatabase, testServices, type TestDatabase } from '@clinical/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BinaryRowWriter } from './binaryRowWriter.js';
import { copyRows, copyText, COPY_NULL } from './copyRows.js';
import { claimRequestId, saveIdempotentResponse } from './idempotentClientRequests.js';
import { withAuditedClient } from './withAuditedClient.js';

let database: TestDatabase;
let admin: pg.Client;
let pool: pg.Pool;
let patientId: string;

beforeAll(async () => {
  const { postgresUrl, templateDatabase } = testServices();
  database = await createTestDatabase(postgresUrl, templateDatabase);
  admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  pool = new pg.Pool({ connectionString: database.urlAs('clinical_vitals_svc'), max: 3 });
  const { rows } = await admin.query<{ patient_id: string }>(
    `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date) VALUES ('COPY-1', 'SITE-A', 'RA001', '2024-01-15')
     RETURNING patient_id`,
  );
  patientId = rows[0]!.patient_id;
});

afterAll(async () => {
  await pool?.end();
  await admin?.end();
  await database?.drop();
});

const line = (heartRate: number | null, dataBatch: string | null = null) =>
  `${patientId}\t2024-05-01T10:00:00.000Z\t${heartRate === null ? COPY_NULL : heartRate}\t${dataBatch === null ? COPY_NULL : copyText(dataBatch)}\n`;
const COLUMNS = ['patient_id', 'measurement_time', 'heart_rate', 'data_batch'];

describe('copyRows', () => {
  it('writes rows with one COPY, NULLs and escaped text intact, audited once per statement and patient', async () => {
    const tricky = JSON.stringify({ note: 'tab\there, newline\nthere, backslash \\ and "quotes"' });
    const written = await withAuditedClient(pool, { userId: 'copier', requestId: 'req-copy' }, (client) =>
      copyRows(client, 'vital_signs', COLUMNS, [line(60), line(null, tricky), line(70)].join('')),
    );
    expect(written).toBe(3);
    const { rows } = await admin.query('SELECT heart_rate, data_batch FROM vital_signs WHERE patient_id = $1 ORDER BY heart_rate', [patientId]);
    expect(rows).toEqual([
      { heart_rate: 60, data_batch: null },
      { heart_rate: 70, data_batch: null },
      { heart_rate: null, data_batch: JSON.parse(tricky) },
    ]);
    const audit = await admin.query(
      `SELECT user_id, request_id, payload->>'count' AS count FROM audit_events WHERE entity_type = 'vital_signs' AND patient_id = $1`,
      [patientId],
    );
    expect(audit.rows).toEqual([{ user_id: 'copier', request_id: 'req-copy', count: '3' }]);
  });

  it('streams an iterable of lines', async () => {
    function* lines() {
      for (let index = 0; index < 20_000; index += 1) {
        yield line(40 + (index % 200));
      }
    }
    const written = await withAuditedClient(pool, { userId: 'copier' }, (client) => copyRows(client, 'vital_signs', COLUMNS, lines()));
    expect(written).toBe(20_000);
  });

  it('keeps nothing when a row is refused, and the connection stays usable', async () => {
    const before = await admin.query('SELECT count(*)::int AS n FROM vital_signs');
    await expect(
      withAuditedClient(pool, { userId: 'copier' }, (client) => copyRows(client, 'vital_signs', COLUMNS, line(60) + line(999))),
    ).rejects.toMatchObject({ code: '23514' });
    const after = await admin.query('SELECT count(*)::int AS n FROM vital_signs');
    expect(after.rows[0].n).toBe(before.rows[0].n);
    await expect(withAuditedClient(pool, { userId: 'copier' }, (client) => client.query('SELECT 1'))).resolves.toBeDefined();
  });

  it('writes binary rows (header and trailer added), streamed from an iterable; a refused row keeps nothing', async () => {
    const binaryRow = (heartRate: number) =>
      Buffer.from(new BinaryRowWriter().row(4).uuid(patientId).timestamptz(Date.UTC(2024, 4, 2, 10)).int4(heartRate).jsonb('{"b": 1}').bytes());
    function* chunks() {
      for (let index = 0; index < 3; index += 1) {
        yield binaryRow(100 + index);
      }
    }
    const written = await withAuditedClient(pool, { userId: 'copier' }, (client) =>
      copyRows(client, 'vital_signs', COLUMNS, chunks(), { format: 'binary' }),
    );
    expect(written).toBe(3);
    const { rows } = await admin.query(
      `SELECT heart_rate, data_batch FROM vital_signs WHERE patient_id = $1 AND measurement_time = '2024-05-02T10:00:00Z' ORDER BY heart_rate`,
      [patientId],
    );
    expect(rows).toEqual([100, 101, 102].map((heartRate) => ({ heart_rate: heartRate, data_batch: { b: 1 } })));
    await expect(
      withAuditedClient(pool, { userId: 'copier' }, (client) =>
        copyRows(client, 'vital_signs', COLUMNS, Buffer.concat([binaryRow(110), binaryRow(999)]), { format: 'binary' }),
      ),
    ).rejects.toMatchObject({ code: '23514' });
    const after = await admin.query(
      `SELECT count(*)::int AS n FROM vital_signs WHERE patient_id = $1 AND measurement_time = '2024-05-02T10:00:00Z'`,
      [patientId],
    );
    expect(after.rows[0].n).toBe(3);
  });

  it('refuses identifiers that are not plain names', async () => {
    await expect(
      withAuditedClient(pool, { userId: 'copier' }, (client) => copyRows(client, 'vital_signs; DROP TABLE x', COLUMNS, '')),
    ).rejects.toThrow(/identifier/);
  });
});

describe('withAuditedClient', () => {
  it('rolls back everything when the handler throws', async () => {
    const before = await admin.query('SELECT count(*)::int AS n FROM vital_signs');
    await expect(
      withAuditedClient(pool, { userId: 'copier' }, async (client) => {
        await copyRows(client, 'vital_signs', COLUMNS, line(80));
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    const after = await admin.query('SELECT count(*)::int AS n FROM vital_signs');
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });
});

describe('claimRequestId', () => {
  const identity = { scope: 'VitalsService/Copy:alice', requestId: '4b0b3f6e-7a0e-4b8f-9f0e-1c2d3e4f5a6b' };
  const hash = createHash('sha256').update('request').digest();

  it('returns nothing for a new id, the stored response once committed, and refuses a concurrent holder', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let claimed: () => void = () => {};
    const firstClaimed = new Promise<void>((resolve) => {
      claimed = resolve;
    });
    const first = withAuditedClient(pool, { userId: 'alice' }, async (client) => {
      expect(await claimRequestId(client, identity, 'abort')).toBeUndefined();
      claimed();
      await held;
      await saveIdempotentResponse(client, identity, hash, Buffer.from('first response'));
    });
    await firstClaimed;
    await expect(withAuditedClient(pool, { userId: 'alice' }, (client) => claimRequestId(client, identity, 'abort'))).rejects.toThrow(
      /in progress/,
    );
    const waiter = withAuditedClient(pool, { userId: 'alice' }, (client) => claimRequestId(client, identity, 'wait'));
    release();
    await first;
    const stored = await waiter;
    expect(stored?.response.toString()).toBe('first response');
    expect(stored?.requestHash.equals(hash)).toBe(true);
  });
});
