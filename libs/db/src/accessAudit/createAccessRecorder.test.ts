import { randomUUID } from 'node:crypto';
import { UnavailableError } from '@clinical/errors';
import { createTestDatabase, eventually, testServices, type TestDatabase } from '@clinical/testing';
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
    // Written by the timer, not by a close.
    await eventually(async () => (recorder.stats().persisted === 250 ? true : undefined), 30_000, 'the flushes');
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
    await eventually(async () => (failures.length >= 2 ? true : undefined), 30_000, 'failed flushes');
    expect(recorder.stats().pending).toBe(2);
    expect(() => recorder.record(Array.from({ length: 4 }, () => readEvent(randomUUID())))).toThrow(UnavailableError);
    // Not a fault of the events' data: none is dropped.
    expect(recorder.stats().dropped).toBe(0);
    await expect(recorder.close()).rejects.toThrow();
    await unreachable.end();
  });

  it('writes events whose ids are not UUIDs, keeping the text, and the events around them', async () => {
    const recorder = createAccessRecorder({ pool, flushIntervalMs: 10 });
    const [before, after, lone] = [randomUUID(), randomUUID(), randomUUID()];
    const upper = randomUUID().toUpperCase();
    const agentId = `agent-${randomUUID()}`;
    recorder.record([
      readEvent(before),
      // As GetAgentContext records a decision written by SQL: neither id is a UUID.
      readEvent('PAT-0007', { entityType: 'mcp_context', entityId: `${agentId}/decision-1`, method: '/clinical.audit.v1.AgentContextService/GetAgentContext' }),
      readEvent(upper),
      readEvent(after, { entityId: '', requestId: 'r\0-1', clientIp: 'fe80::1%eth0', actor: 'a'.repeat(300) }),
      // A token's subject may hold a lone surrogate: kept as U+FFFD, not dropped.
      readEvent(lone, { actor: 'bad\uD800sub\uDC00' }),
    ]);
    await recorder.close();
    expect(recorder.stats()).toMatchObject({ recorded: 5, persisted: 5, pending: 0, dropped: 0, failedFlushes: 0 });
    const { rows: subjects } = await admin.query(`SELECT user_id FROM audit_events WHERE patient_id = $1`, [lone]);
    expect(subjects).toEqual([{ user_id: 'bad\uFFFDsub\uFFFD' }]);
    const { rows } = await admin.query(
      `SELECT entity_id, entity_key, patient_id, payload FROM audit_events WHERE entity_key = $1`,
      [`${agentId}/decision-1`],
    );
    expect(rows).toEqual([
      { entity_id: null, entity_key: `${agentId}/decision-1`, patient_id: null, payload: { method: '/clinical.audit.v1.AgentContextService/GetAgentContext', patient_key: 'PAT-0007' } },
    ]);
    const { rows: others } = await admin.query(
      `SELECT entity_id, entity_key, patient_id, user_id, request_id, host(ip_address) AS ip FROM audit_events
        WHERE event_type = 'DATA_ACCESS' AND patient_id = ANY($1::uuid[]) ORDER BY event_seq`,
      [[before, upper, after]],
    );
    expect(others).toEqual([
      expect.objectContaining({ entity_id: before, entity_key: before, patient_id: before }),
      // Any case in, the canonical form stored.
      expect.objectContaining({ entity_id: upper.toLowerCase(), entity_key: upper.toLowerCase(), patient_id: upper.toLowerCase() }),
      // No NUL in text, at most what the column holds, no address inet would refuse.
      { entity_id: null, entity_key: null, patient_id: after, user_id: 'a'.repeat(200), request_id: 'r-1', ip: null },
    ]);
  });

  it('keeps an actor cut in the middle of a surrogate pair, the half pair as U+FFFD', async () => {
    const recorder = createAccessRecorder({ pool, flushIntervalMs: 10 });
    const patientId = randomUUID();
    // 200 characters is the column's limit: the cut falls between the two halves of the emoji.
    recorder.record([readEvent(patientId, { actor: `${'a'.repeat(199)}\u{1F691}tail` })]);
    await recorder.close();
    expect(recorder.stats()).toMatchObject({ recorded: 1, persisted: 1, dropped: 0 });
    const { rows } = await admin.query(`SELECT user_id FROM audit_events WHERE patient_id = $1`, [patientId]);
    expect(rows).toEqual([{ user_id: `${'a'.repeat(199)}\uFFFD` }]);
  });

  it('drops an event the database refuses for its data, reports it, and keeps writing the others', async () => {
    // The database refuses one actor's events, as it would any event whose data it cannot take.
    await admin.query(`ALTER TABLE audit_events ADD CONSTRAINT refuses_poison CHECK (user_id <> 'poison')`);
    try {
      const dropped: { code: unknown; event: AccessEvent }[] = [];
      const flushErrors: unknown[] = [];
      const recorder = createAccessRecorder({
        pool,
        flushIntervalMs: 10,
        maxBatchSize: 16,
        onFlushError: (error) => flushErrors.push(error),
        onEventDropped: (error, event) => dropped.push({ code: (error as { cause?: { code?: unknown } }).cause?.code, event }),
      });
      const patients = Array.from({ length: 40 }, () => randomUUID());
      const poison = randomUUID();
      recorder.record(patients.slice(0, 5).map((patientId) => readEvent(patientId)));
      recorder.record([readEvent(poison, { actor: 'poison' })]);
      recorder.record(patients.slice(5).map((patientId) => readEvent(patientId)));
      // Every good event written, in a few batches; the bad one out of the queue.
      await eventually(async () => (recorder.stats().pending === 0 && recorder.stats().persisted === 40 ? true : undefined), 30_000, 'the batches');
      expect(await accessEventsOf(patients)).toHaveLength(40);
      expect(await accessEventsOf([poison])).toHaveLength(0);
      expect(recorder.stats()).toMatchObject({ recorded: 41, persisted: 40, dropped: 1, pending: 0, failedFlushes: 0 });
      expect(dropped).toEqual([{ code: expect.anything(), event: expect.objectContaining({ actor: 'poison', patientId: poison }) }]);
      expect(flushErrors).toEqual([]);
      // And the recorder goes on.
      const later = randomUUID();
      recorder.record([readEvent(later)]);
      await recorder.close();
      expect(await accessEventsOf([later])).toHaveLength(1);
    } finally {
      await admin.query('ALTER TABLE audit_events DROP CONSTRAINT refuses_poison');
    }
  });
});
