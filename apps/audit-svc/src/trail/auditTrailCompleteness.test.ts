import { randomUUID } from 'node:crypto';
import { auditV1 } from '@clinical/contracts';
import { createAccessRecorder, createDatabasePool } from '@clinical/db';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import type { Client } from 'nice-grpc';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditServiceModule } from '../auditServiceModule.js';
import { sealPendingEvents } from './chainSealer.js';
import { connectAs, inAuditedTransaction, insertPatient } from '../testKit.js';

let service: TestService;
let admin: pg.Client;
let auditor: Client<typeof auditV1.AuditServiceDefinition>;

async function countEvents(where: string, params: unknown[] = []): Promise<number> {
  const { rows } = await admin.query(`SELECT count(*)::int AS n FROM audit_events WHERE ${where}`, params);
  return rows[0].n;
}

beforeAll(async () => {
  service = await startTestService(auditServiceModule);
  admin = await connectAs(service);
  auditor = service.client(
    auditV1.AuditServiceDefinition,
    await service.token({ sub: 'auditor-1', roles: ['auditor'], sites: '*' }),
  );
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

describe('completeness, proven by counting', () => {
  it('finds exactly one event per write, per vital_signs statement and patient, and per read', async () => {
    const N = 12;
    const patientSvc = await connectAs(service, 'clinical_patient_svc');
    const vitalsSvc = await connectAs(service, 'clinical_vitals_svc');
    const traceId = randomUUID().replace(/-/g, '');
    const patients: string[] = [];
    try {
      // Patient writes, as patient-svc does them: N inserts and N updates.
      for (let i = 0; i < N; i += 1) {
        await inAuditedTransaction(patientSvc, { userId: 'coordinator-c', requestId: `req-${i}`, traceId, reason: 'count' }, async () => {
          const patientId = await insertPatient(patientSvc);
          patients.push(patientId);
          await patientSvc.query("UPDATE patients SET treatment_arm = 'B' WHERE patient_id = $1", [patientId]);
        });
      }
      // Document writes: N inserts and N new versions.
      for (const patientId of patients) {
        await inAuditedTransaction(patientSvc, { userId: 'coordinator-c', traceId }, async () => {
          const { rows } = await patientSvc.query(
            `INSERT INTO documents (patient_id, document_type, title) VALUES ($1, 'consent', 'ICF') RETURNING document_id`,
            [patientId],
          );
          await patientSvc.query('UPDATE documents SET version = 2, title = $2 WHERE document_id = $1', [rows[0].document_id, 'ICF v2']);
        });
      }
      // Vital signs: one statement of 10 readings for each of N patients, twice.
      for (let round = 0; round < 2; round += 1) {
        await inAuditedTransaction(vitalsSvc, { userId: 'device-gateway', traceId }, async () => {
          await vitalsSvc.query(
            `INSERT INTO vital_signs (patient_id, measurement_time, systolic_bp, diastolic_bp, heart_rate, temperature)
             SELECT p, now() - make_interval(mins => g), 120, 80, 70, 36.6 FROM unnest($1::uuid[]) AS p, generate_series(1, 10) AS g`,
            [patients],
          );
        });
      }
    } finally {
      await patientSvc.end();
      await vitalsSvc.end();
    }
    // Reads, recorded by the access recorder every service uses: 3 per patient.
    const pool = await createDatabasePool({ connectionUri: service.database.urlAs('clinical_patient_svc') });
    const recorder = createAccessRecorder({ pool, flushIntervalMs: 10 });
    for (let read = 0; read < 3; read += 1) {
      recorder.record(
        patients.map((patientId) => ({
          actor: 'monitor-c',
          method: '/clinical.patient.v1.PatientService/GetPatient',
          entityType: 'patient',
          entityId: patientId,
          patientId,
          traceId,
        })),
      );
    }
    await recorder.close();
    await pool.end();

    const ofPatients = 'patient_id = ANY($1::uuid[])';
    expect(await countEvents(`${ofPatients} AND entity_type = 'patient' AND action = 'INSERT'`, [patients])).toBe(N);
    expect(await countEvents(`${ofPatients} AND entity_type = 'patient' AND action = 'UPDATE'`, [patients])).toBe(N);
    expect(await countEvents(`${ofPatients} AND entity_type = 'document' AND action = 'INSERT'`, [patients])).toBe(N);
    expect(await countEvents(`${ofPatients} AND entity_type = 'document' AND action = 'UPDATE'`, [patients])).toBe(N);
    expect(await countEvents(`${ofPatients} AND entity_type = 'vital_signs'`, [patients])).toBe(2 * N);
    expect(await countEvents(`${ofPatients} AND event_type = 'DATA_ACCESS'`, [patients])).toBe(3 * N);
    // Who, what, why, request and trace on the writes.
    const { rows } = await admin.query(
      `SELECT user_id, request_id, trace_id, reason, payload FROM audit_events
        WHERE ${ofPatients} AND entity_type = 'patient' AND action = 'UPDATE' ORDER BY event_seq LIMIT 1`,
      [patients],
    );
    expect(rows[0]).toMatchObject({ user_id: 'coordinator-c', request_id: 'req-0', trace_id: traceId, reason: 'count' });
    expect(rows[0].payload).toEqual({ old: expect.objectContaining({ treatment_arm: 'A' }), new: expect.objectContaining({ treatment_arm: 'B' }) });

    // Every one of them is chained once the sealer has run, and the API finds the same numbers.
    await sealPendingEvents(service.running.runtime.pool, 100_000, { waitForOtherSealers: true });
    expect(await countEvents(`${ofPatients} AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_seq = audit_events.event_seq)`, [patients])).toBe(0);
    const listed = [];
    let pageToken = '';
    do {
      const page = await auditor.listAuditEvents({ patientId: patients[0]!, pageSize: 3, pageToken });
      listed.push(...page.events);
      pageToken = page.nextPageToken;
    } while (pageToken);
    // Per patient: 2 patient events, 2 document events, 2 vital_signs events, 3 reads.
    expect(listed).toHaveLength(9);
    expect(listed.every((event) => event.sequenceNumber !== '0' && /^[0-9a-f]{64}$/.test(event.rowHash))).toBe(true);
    expect(new Set(listed.map((event) => event.entityType))).toEqual(new Set(['patients', 'documents', 'vital_signs']));
  });
});
