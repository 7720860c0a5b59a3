import { randomUUID } from 'node:crypto';
import { BinaryRowWriter, copyRows } from '@clinical/db';
import { createTestDatabase, testServices, type TestDatabase } from '@clinical/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// vital_signs_bulk takes the service's bulk COPY without per-row triggers or foreign key: the
// database still refuses any row not accounted for by audit events of the same transaction
// (migration vital-signs-bulk-ingestion). These tests go around the service, as its role.

let database: TestDatabase;
let admin: pg.Client;
let vitals: pg.Client;

beforeAll(async () => {
  const { postgresUrl, templateDatabase } = testServices();
  database = await createTestDatabase(postgresUrl, templateDatabase);
  admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  vitals = new pg.Client({ connectionString: database.urlAs('clinical_vitals_svc') });
  await vitals.connect();
});

afterAll(async () => {
  await vitals?.end();
  await admin?.end();
  await database?.drop();
});

async function newPatient(): Promise<string> {
  const { rows } = await admin.query<{ patient_id: string }>(
    `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date) VALUES ($1, 'SITE-A', 'RA001', '2024-01-15')
     RETURNING patient_id`,
    [`BULK-${randomUUID().slice(0, 12)}`],
  );
  return rows[0]!.patient_id;
}

const COLUMNS = ['vital_id', 'patient_id', 'measurement_time', 'heart_rate'];
const TIME_MS = Date.UTC(2026, 0, 5, 8);

/** `count` readings of `patientId` as binary COPY rows. */
function rows(patientId: string, count: number): Buffer {
  const writer = new BinaryRowWriter();
  for (let index = 0; index < count; index += 1) {
    writer.row(COLUMNS.length).uuid(randomUUID()).uuid(patientId).timestamptz(TIME_MS + index * 60_000).int4(60 + index);
  }
  return Buffer.from(writer.bytes());
}

const copy = (client: pg.ClientBase, bytes: Buffer) => copyRows(client, 'vital_signs_bulk', COLUMNS, bytes, { format: 'binary' });

/** Writes the audit events of `counts` readings per patient and claims them, as vitals-svc does. */
const audit = (client: pg.ClientBase, counts: Record<string, number>) =>
  client.query('SELECT record_vital_signs_bulk_audit($1::uuid[], $2::int4[], $3::timestamptz[], $3::timestamptz[], $4::text[])', [
    Object.keys(counts),
    Object.values(counts),
    Object.keys(counts).map(() => new Date(TIME_MS).toISOString()),
    Object.keys(counts).map(() => 'digest'),
  ]);

/** Runs `work` in a transaction with an audit context as vitals-svc's role; commits it. */
async function inTransaction<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  await vitals.query('BEGIN');
  try {
    await vitals.query("SELECT set_config('app.user_id', 'bulk-writer', true), set_config('app.request_id', 'req-bulk', true)");
    const result = await work(vitals);
    await vitals.query('COMMIT');
    return result;
  } catch (error) {
    await vitals.query('ROLLBACK');
    throw error;
  }
}

const countRows = async (patientId: string) =>
  (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM vital_signs WHERE patient_id = $1', [patientId])).rows[0]!.n;
const countEvents = async (patientId: string) =>
  (await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_events WHERE entity_type = 'vital_signs' AND patient_id = $1`, [patientId]))
    .rows[0]!.n;

describe('vital_signs_bulk', () => {
  it('takes rows its audit events account for, events chained as the service wrote them, rows read through vital_signs', async () => {
    const [first, second] = [await newPatient(), await newPatient()];
    await inTransaction(async (client) => {
      await audit(client, { [first]: 3, [second]: 2 });
      expect(await copy(client, Buffer.concat([rows(first, 3), rows(second, 2)]))).toBe(5);
      await audit(client, { [first]: 1 });
      expect(await copy(client, rows(first, 1))).toBe(1);
    });
    expect(await countRows(first)).toBe(4);
    expect(await countRows(second)).toBe(2);
    const { rows: events } = await admin.query(
      `SELECT e.patient_id, e.user_id, e.request_id, e.db_role, e.action, (e.payload ->> 'count')::int AS count,
              EXISTS (SELECT 1 FROM audit_chain_pending AS p WHERE p.event_seq = e.event_seq) AS chained
         FROM audit_events AS e WHERE e.entity_type = 'vital_signs' AND e.patient_id = ANY($1::uuid[]) ORDER BY e.event_seq`,
      [[first, second]],
    );
    expect(events).toEqual([
      { patient_id: first, user_id: 'bulk-writer', request_id: 'req-bulk', db_role: 'clinical_vitals_svc', action: 'INSERT', count: 3, chained: true },
      { patient_id: second, user_id: 'bulk-writer', request_id: 'req-bulk', db_role: 'clinical_vitals_svc', action: 'INSERT', count: 2, chained: true },
      { patient_id: first, user_id: 'bulk-writer', request_id: 'req-bulk', db_role: 'clinical_vitals_svc', action: 'INSERT', count: 1, chained: true },
    ]);
  });

  it('refuses rows written without audit events, by COPY or INSERT, before writing them', async () => {
    const patientId = await newPatient();
    await expect(inTransaction((client) => copy(client, rows(patientId, 2)))).rejects.toMatchObject({ code: '42501' });
    await expect(
      inTransaction((client) =>
        client.query(`INSERT INTO vital_signs_bulk (patient_id, measurement_time, heart_rate) VALUES ($1, now(), 70)`, [patientId]),
      ),
    ).rejects.toMatchObject({ code: '42501', message: expect.stringMatching(/claimed by their audit events/) });
    expect(await countRows(patientId)).toBe(0);
  });

  it('refuses a statement that writes other than the rows its events count, and a second statement on one claim', async () => {
    const patientId = await newPatient();
    await expect(
      inTransaction(async (client) => {
        await audit(client, { [patientId]: 1 });
        await copy(client, rows(patientId, 2));
      }),
    ).rejects.toMatchObject({ code: '42501', message: expect.stringMatching(/wrote 2 rows, its audit events count 1/) });
    await expect(
      inTransaction(async (client) => {
        await audit(client, { [patientId]: 2 });
        await copy(client, rows(patientId, 1));
      }),
    ).rejects.toMatchObject({ code: '42501' });
    await expect(
      inTransaction(async (client) => {
        await audit(client, { [patientId]: 1 });
        await copy(client, rows(patientId, 1));
        await copy(client, rows(patientId, 1));
      }),
    ).rejects.toMatchObject({ code: '42501' });
    expect(await countRows(patientId)).toBe(0);
    expect(await countEvents(patientId)).toBe(0);
  });

  it('cannot commit audit events that claim rows never written', async () => {
    const patientId = await newPatient();
    await expect(inTransaction((client) => audit(client, { [patientId]: 3 }))).rejects.toMatchObject({
      code: '23000',
      message: expect.stringMatching(/never written/),
    });
    await expect(
      inTransaction(async (client) => {
        await audit(client, { [patientId]: 3 });
        await audit(client, { [patientId]: 3 });
      }),
    ).rejects.toMatchObject({ code: '55000' });
    expect(await countEvents(patientId)).toBe(0);
  });

  it('accepts only its own transaction\'s unclaimed vital_signs INSERT events, of patients that exist', async () => {
    const patientId = await newPatient();
    await inTransaction(async (client) => {
      await audit(client, { [patientId]: 1 });
      await copy(client, rows(patientId, 1));
    });
    const { rows: events } = await admin.query<{ event_id: string }>(
      `SELECT event_id FROM audit_events WHERE entity_type = 'vital_signs' AND patient_id = $1`,
      [patientId],
    );
    expect(events).toHaveLength(1);
    const claim = (client: pg.ClientBase, ids: string[]) => client.query('SELECT claim_vital_signs_bulk_events($1::uuid[])', [ids]);
    // Another transaction's events, already claimed and committed.
    await expect(inTransaction((client) => claim(client, [events[0]!.event_id]))).rejects.toMatchObject({ code: '42501' });
    // An access event written in this transaction is no vital_signs INSERT.
    await expect(
      inTransaction(async (client) => {
        const eventId = randomUUID();
        await client.query(
          `INSERT INTO audit_events (event_id, event_type, entity_type, entity_id, patient_id, user_id, action, payload)
           VALUES ($1, 'DATA_ACCESS', 'vital_signs', $2, $2, 'x', 'READ', '{"count": 5}')`,
          [eventId, patientId],
        );
        await claim(client, [eventId]);
      }),
    ).rejects.toMatchObject({ code: '42501' });
    // A patient that does not exist.
    await expect(inTransaction((client) => audit(client, { [randomUUID()]: 1 }))).rejects.toMatchObject({ code: '23503' });
  });

  it('keeps the service to appending: no update, delete or truncate of bulk readings, no look at the claims', async () => {
    for (const statement of [
      'UPDATE vital_signs_bulk SET heart_rate = 71',
      'DELETE FROM vital_signs_bulk',
      'TRUNCATE vital_signs_bulk',
      'SELECT * FROM vital_signs_bulk_claims',
      'DELETE FROM vital_signs_bulk_claims',
    ]) {
      await expect(vitals.query(statement), statement).rejects.toMatchObject({ code: '42501' });
    }
  });

  it('audits changes made to bulk readings outside the service, and keeps a patient that has them', async () => {
    const patientId = await newPatient();
    await inTransaction(async (client) => {
      await audit(client, { [patientId]: 2 });
      await copy(client, rows(patientId, 2));
    });
    await admin.query('UPDATE vital_signs_bulk SET heart_rate = 99 WHERE patient_id = $1', [patientId]);
    await admin.query('DELETE FROM vital_signs WHERE patient_id = $1 AND heart_rate = 99 AND measurement_time = $2', [patientId, new Date(TIME_MS)]);
    const { rows: actions } = await admin.query<{ action: string; count: number }>(
      `SELECT action, (payload ->> 'count')::int AS count FROM audit_events
        WHERE entity_type = 'vital_signs' AND patient_id = $1 ORDER BY event_seq`,
      [patientId],
    );
    expect(actions).toEqual([
      { action: 'INSERT', count: 2 },
      { action: 'UPDATE', count: 2 },
      { action: 'DELETE', count: 1 },
    ]);
    await expect(admin.query('DELETE FROM patients WHERE patient_id = $1', [patientId])).rejects.toMatchObject({ code: '23503' });
    await expect(admin.query('UPDATE patients SET patient_id = gen_random_uuid() WHERE patient_id = $1', [patientId])).rejects.toMatchObject({
      code: '23503',
    });
    expect(await countRows(patientId)).toBe(1);
  });
});
