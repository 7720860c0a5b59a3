import { randomUUID } from 'node:crypto';
import { UnavailableError } from '@clinical/errors';
import { createTestDatabase, testServices, type TestDatabase } from '@clinical/testing';
import pg from 'pg';
import type { DatabasePool } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabasePool } from '../createDatabasePool.js';
import { createAccessRecorder, type AccessEvent } from './createAccessRecorder.js';

let database: TestDatabase;
let pool: DatabasePool;
let admin: pg.Client;

const readEvent = (patientId: string, overrides: Partial<AccessEvent> = {}): AccessEvent => ({
  actor: 'monitor-3',
  method: '/clinical.patient.v1.PatientService/GetPatient',
  entityType: 'patient',
  entityId: patientId,
  patientId,
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  clientIp: '10.1.2.3',
  ...overrides,
});

async function accessEventsOf(patientIds: string[]): Promise<Record<string, unknown>[]> {
  const { rows } = await admin.query(
    `SELECT patient_id, user_id, action, event_type, payload, trace_id, host(ip_address) AS ip, "timestamp"
       FROM audit_events WHERE event_type = 'DATA_ACCESS' AND patient_id = ANY($1::uuid[]) ORDER BY event_seq`,
    [patientIds],
  );
  return rows;
}

beforeAll(async () => {
  const { postgresUrl, templateDatabase } = testServices();
  database = await createTestDatabase(postgresUrl, templateDatabase);
  pool = await createDatabasePool({ connectionUri: database.urlAs('clinical_patient_svc') });
  admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
});

afterAll(async () => {
  await pool?.end();
  await admin?.end();
  await database?.drop();
});

describe('createAccessRecorder', () => {
  it('writes queued events within the flush interval, one INSERT per batch', async () => {
    const recorder = createAccessRecorder({ pool, flushIntervalMs: 20, maxBatchSize: 100 });
    const patients = Array.from({ length: 250 }, () => randomUUID());
    recorder.record(patients.map((patientId) => readEvent(patientId)));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const rows = await accessEventsOf(patients);
    expect(rows).toHaveLength(250);
    expect(rows[0]).toMatchObject({
      user_id: 'monitor-3',
      action: 'READ',
      event_type: 'DATA_ACCESS',
      payload: { method: '/clinical.patient.v1.PatientService/GetPatient' },
      trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
      ip: '10.1.2.3',
    });
    expect(recorder.stats()).toMatchObject({ recorded: 250, persisted: 250, pending: 0, failedFlushes: 0 });
    await recorder.close();
  });

  it('flushes everything on close, and then refuses new events', async () => {
    const recorder = createAccessRecorder({ pool, flushIntervalMs: 60_000 });
    const patients = Array.from({ length: 10 }, () => randomUUID());
    recorder.record(patients.map((patientId) => readEvent(patientId)));
    await recorder.close();
    expect(await accessEventsOf(patients)).toHaveLength(10);
    expect(() => recorder.record([readEvent(randomUUID())])).toThrow(UnavailableError);
  });

  it('keeps events while the database refuses them, retries, and refuses reads once the backlog is full', async () => {
    // A database without the audit table: every flush fails, as during an outage.
    const unreachable = await createDatabasePool({ connectionUri: testServices().postgresUrl });
    const failures: number[] = [];
    const recorder = createAccessRecorder({
      pool: unreachable,
      flushIntervalMs: 10,
      maxPendingEvents: 5,
      onFlushError: (_error, pending) => failures.push(pending),
    });
    recorder.record([readEvent(randomUUID()), readEvent(randomUUID())]);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(failures.length).toBeGreaterThan(0);
    expect(recorder.stats().pending).toBe(2);
    expect(() => recorder.record(Array.from({ length: 4 }, () => readEvent(randomUUID())))).toThrow(UnavailableError);
    await expect(recorder.close()).rejects.toThrow();
    await unreachable.end();
  });
});
