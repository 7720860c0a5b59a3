import { randomUUID } from 'node:crypto';
import { patientV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { Status } from 'nice-grpc';
import { BadRequest } from 'nice-grpc-error-details';
import { Status as RpcStatus } from 'nice-grpc-error-details/lib/proto/google/rpc/status.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientServiceModule } from '../patientServiceModule.js';
import { expectStatus, newPatient } from '../testing/fixtures.js';
import { patientCacheKey } from './patientCache.js';

let service: TestService;
let admin: pg.Client;
let coordinatorToken: string;

beforeAll(async () => {
  service = await startTestService(patientServiceModule);
  admin = new pg.Client({ connectionString: service.database.url });
  await admin.connect();
  coordinatorToken = await service.token({ sub: 'coordinator-1', roles: ['coordinator'], sites: ['SITE-A'] });
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

describe('CreatePatient then GetPatient', () => {
  it('creates a patient and reads it back, with every field', async () => {
    const client = service.client(patientV1.PatientServiceDefinition, coordinatorToken);
    const input = newPatient();
    const { patient: created } = await client.createPatient({ patient: input });
    expect(created?.patientId).toMatch(/^[0-9a-f-]{36}$/);
    expect(created).toMatchObject({
      subjectNumber: input.subjectNumber,
      siteId: 'SITE-A',
      status: patientV1.PatientStatus.PATIENT_STATUS_ENROLLED,
      demographics: input.demographics,
      medicalHistory: input.medicalHistory,
    });

    const { patient: read } = await client.getPatient({ patientId: created!.patientId });
    expect(read).toEqual(created);
  });

  it('counts characters as PostgreSQL does: 50 emoji fit a 50-character field', async () => {
    const client = service.client(patientV1.PatientServiceDefinition, coordinatorToken);
    const treatmentArm = '\u{1F600}'.repeat(50);
    const { patient } = await client.createPatient({ patient: { ...newPatient(), treatmentArm } });
    expect((await client.getPatient({ patientId: patient!.patientId })).patient?.treatmentArm).toBe(treatmentArm);
  });

  it('writes the audit row in the same transaction, naming actor, request and trace', async () => {
    const client = service.client(patientV1.PatientServiceDefinition, coordinatorToken);
    const requestId = randomUUID();
    const { patient } = await client.createPatient({ patient: newPatient(), requestId });
    const { rows } = await admin.query(
      `SELECT event_type, action, user_id, request_id, trace_id, db_role FROM audit_events
        WHERE entity_type = 'patient' AND entity_id = $1`,
      [patient!.patientId],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      event_type: 'DATA_CHANGE',
      action: 'INSERT',
      user_id: 'coordinator-1',
      request_id: requestId,
      db_role: 'clinical_patient_svc',
    });
    expect(rows[0].trace_id).toMatch(/^[0-9a-f]{32}$/);
  });

  it('serves reads from the cache: a change made behind the service is not seen until the entry goes', async () => {
    const client = service.client(patientV1.PatientServiceDefinition, coordinatorToken);
    const { patient } = await client.createPatient({ patient: newPatient() });
    const key = patientCacheKey(patient!.patientId);
    expect(await service.redis.exists(key)).toBe(1);

    await admin.query("UPDATE patients SET treatment_arm = 'CHANGED-IN-SQL' WHERE patient_id = $1", [patient!.patientId]);
    const cached = await client.getPatient({ patientId: patient!.patientId });
    expect(cached.patient?.treatmentArm).toBe('ARM-1');

    await service.redis.del(key);
    const loaded = await client.getPatient({ patientId: patient!.patientId });
    expect(loaded.patient?.treatmentArm).toBe('CHANGED-IN-SQL');
    expect(await service.redis.exists(key)).toBe(1);
  });

  it('records an access event for each read, cache hit or not', async () => {
    const client = service.client(patientV1.PatientServiceDefinition, coordinatorToken);
    const { patient } = await client.createPatient({ patient: newPatient() });
    await client.getPatient({ patientId: patient!.patientId });
    await client.getPatient({ patientId: patient!.patientId });
    await service.running.runtime.accessRecorder.flush();
    const { rows } = await admin.query(
      `SELECT user_id, action, payload, trace_id FROM audit_events
        WHERE event_type = 'DATA_ACCESS' AND patient_id = $1`,
      [patient!.patientId],
    );
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      expect(row).toMatchObject({
        user_id: 'coordinator-1',
        action: 'READ',
        payload: { method: '/clinical.patient.v1.PatientService/GetPatient' },
      });
      expect(row.trace_id).toMatch(/^[0-9a-f]{32}$/);
    }
  });

  it('returns the first result to a retry with the same request_id', async () => {
    const client = service.client(patientV1.PatientServiceDefinition, coordinatorToken);
    const request = { patient: newPatient(), requestId: randomUUID() };
    const first = await client.createPatient(request);
    const retry = await client.createPatient(request);
    expect(retry).toEqual(first);
    const { rows } = await admin.query('SELECT count(*)::int AS n FROM patients WHERE subject_number = $1', [
      request.patient.subjectNumber,
    ]);
    expect(rows[0].n).toBe(1);
    const reused = await expectStatus(
      client.createPatient({ ...request, patient: newPatient() }),
      Status.INVALID_ARGUMENT,
    );
    expect(reused.details).toMatch(/request_id/);
  });

  it('refuses a duplicate subject number with ALREADY_EXISTS', async () => {
    const client = service.client(patientV1.PatientServiceDefinition, coordinatorToken);
    const patient = newPatient();
    await client.createPatient({ patient });
    await expectStatus(client.createPatient({ patient }), Status.ALREADY_EXISTS);
  });
});

describe('access control', () => {
  it('refuses calls without a token, with a forged token, and after the session is revoked', async () => {
    await expectStatus(
      service.client(patientV1.PatientServiceDefinition).getPatient({ patientId: randomUUID() }),
      Status.UNAUTHENTICATED,
    );
    await expectStatus(
      service.client(patientV1.PatientServiceDefinition, `${coordinatorToken.slice(0, -4)}AAAA`).getPatient({ patientId: randomUUID() }),
      Status.UNAUTHENTICATED,
    );
    const token = await service.token({ sub: 'short-lived', roles: ['coordinator'], sites: ['SITE-A'] });
    const sid = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sid as string;
    // Revoked as SessionService/RevokeSession does: in PostgreSQL, then marked in the cache.
    await admin.query(`UPDATE sessions SET revoked_at = now(), revoked_by = 'admin' WHERE sid = $1`, [sid]);
    await service.running.runtime.sessions.forget([sid]);
    await expectStatus(
      service.client(patientV1.PatientServiceDefinition, token).createPatient({ patient: newPatient() }),
      Status.UNAUTHENTICATED,
    );
  });

  it('lets a monitor read but not write', async () => {
    const monitor = service.client(
      patientV1.PatientServiceDefinition,
      await service.token({ sub: 'monitor-1', roles: ['monitor'], sites: ['SITE-A'] }),
    );
    await expectStatus(monitor.createPatient({ patient: newPatient() }), Status.PERMISSION_DENIED);
    const { patient } = await service.client(patientV1.PatientServiceDefinition, coordinatorToken).createPatient({ patient: newPatient() });
    await expect(monitor.getPatient({ patientId: patient!.patientId })).resolves.toBeDefined();
  });

  it('answers a patient at another site exactly like a patient that does not exist', async () => {
    const siteB = service.client(
      patientV1.PatientServiceDefinition,
      await service.token({ sub: 'coordinator-b', roles: ['coordinator'], sites: ['SITE-B'] }),
    );
    const { patient } = await service.client(patientV1.PatientServiceDefinition, coordinatorToken).createPatient({ patient: newPatient() });
    const hidden = await expectStatus(siteB.getPatient({ patientId: patient!.patientId }), Status.NOT_FOUND);
    const missingId = randomUUID();
    const missing = await expectStatus(siteB.getPatient({ patientId: missingId }), Status.NOT_FOUND);
    expect(hidden.details.replace(patient!.patientId, 'ID')).toBe(missing.details.replace(missingId, 'ID'));
    await expectStatus(siteB.createPatient({ patient: newPatient({ siteId: 'SITE-A' }) }), Status.PERMISSION_DENIED);
  });
});

describe('bad input', () => {
  it('names the bad field in INVALID_ARGUMENT with BadRequest details, and writes nothing', async () => {
    const client = service.client(patientV1.PatientServiceDefinition, coordinatorToken);
    const error = await expectStatus(client.getPatient({ patientId: 'not-a-uuid' }), Status.INVALID_ARGUMENT);
    expect(error.details).toMatch(/patient_id/);

    const before = await admin.query('SELECT count(*)::int AS n FROM patients');
    const invalid = await expectStatus(
      client.createPatient({
        patient: newPatient({ subjectNumber: '', enrollmentDate: { year: 2024, month: 2, day: 30 }, siteId: 'x'.repeat(51) }),
      }),
      Status.INVALID_ARGUMENT,
    );
    expect(invalid.details).toMatch(/patient\.subject_number/);
    expect(invalid.details).toMatch(/patient\.enrollment_date/);
    expect(invalid.details).toMatch(/patient\.site_id/);
    const after = await admin.query('SELECT count(*)::int AS n FROM patients');
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it('sends google.rpc.BadRequest field violations in the status details', async () => {
    const { status, metadata } = await rawCall(service, coordinatorToken);
    expect(status).toBe(Status.INVALID_ARGUMENT);
    const [detailsBin] = metadata.get('grpc-status-details-bin');
    expect(detailsBin).toBeInstanceOf(Buffer);
    const decoded = decodeStatusDetails(detailsBin as Buffer);
    expect(decoded.fieldViolations.map((violation) => violation.field)).toContain('patient_id');
  });
});

/** A raw grpc-js call, to see the trailers as any client in any language would. */
async function rawCall(target: TestService, token: string): Promise<{ status: number; metadata: import('@grpc/grpc-js').Metadata }> {
  const grpc = await import('@grpc/grpc-js');
  const client = new grpc.Client(target.address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      '/clinical.patient.v1.PatientService/GetPatient',
      (request: patientV1.GetPatientRequest) => Buffer.from(patientV1.GetPatientRequest.encode(request).finish()),
      (bytes: Buffer) => patientV1.GetPatientResponse.decode(bytes),
      { patientId: 'bad' },
      metadata,
      (error) => {
        client.close();
        resolve({ status: error?.code ?? Status.OK, metadata: error?.metadata ?? new grpc.Metadata() });
      },
    );
  });
}

/** google.rpc.Status → its BadRequest detail. */
function decodeStatusDetails(bytes: Buffer): BadRequest {
  const status = RpcStatus.decode(bytes);
  const any = status.details.find((detail) => detail.typeUrl.endsWith('google.rpc.BadRequest'));
  return BadRequest.decode(any!.value);
}
