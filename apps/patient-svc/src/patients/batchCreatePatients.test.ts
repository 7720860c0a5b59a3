import { randomUUID } from 'node:crypto';
import { patientV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientServiceModule } from '../patientServiceModule.js';
import { expectStatus, newPatient } from '../testing/fixtures.js';

let service: TestService;
let admin: pg.Client;
let client: patientV1.PatientServiceClient;

async function count(table: string, where = 'TRUE', values: unknown[] = []): Promise<number> {
  const { rows } = await admin.query(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`, values);
  return rows[0].n as number;
}

beforeAll(async () => {
  service = await startTestService(patientServiceModule);
  admin = new pg.Client({ connectionString: service.database.url });
  await admin.connect();
  client = service.client(patientV1.PatientServiceDefinition, await service.token({ sub: 'batcher', roles: ['coordinator'], sites: ['SITE-A', 'SITE-B'] }));
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

describe('BatchCreatePatients', () => {
  it('creates 1,000 patients in one call, in request order, each with its audit row and cache entry', async () => {
    const requests = Array.from({ length: 1_000 }, (_, index) => ({
      patient: newPatient({ siteId: index % 2 === 0 ? 'SITE-A' : 'SITE-B' }),
      requestId: '',
    }));
    const { patients } = await client.batchCreatePatients({ requests, requestId: '' });
    expect(patients).toHaveLength(1_000);
    expect(patients.map((patient) => patient.subjectNumber)).toEqual(requests.map((request) => request.patient.subjectNumber));
    const ids = patients.map((patient) => patient.patientId);
    expect(await count('audit_events', "entity_type = 'patient' AND action = 'INSERT' AND entity_id = ANY($1::uuid[])", [ids])).toBe(1_000);
    expect(await service.redis.exists(`patient:${ids[999]}`)).toBe(1);
  });

  it('writes nothing when one entry is invalid, and names its index', async () => {
    const before = await count('patients');
    const requests = Array.from({ length: 20 }, () => ({ patient: newPatient(), requestId: '' }));
    requests[13]!.patient.enrollmentDate = { year: 2024, month: 13, day: 1 };
    const error = await expectStatus(client.batchCreatePatients({ requests, requestId: '' }), Status.INVALID_ARGUMENT);
    expect(error.details).toContain('requests[13].patient.enrollment_date');
    expect(await count('patients')).toBe(before);
  });

  it('refuses a subject number repeated inside the batch, naming both entries', async () => {
    const repeated = newPatient();
    const requests = [{ patient: newPatient(), requestId: '' }, { patient: repeated, requestId: '' }, { patient: { ...repeated }, requestId: '' }];
    const error = await expectStatus(client.batchCreatePatients({ requests, requestId: '' }), Status.INVALID_ARGUMENT);
    expect(error.details).toContain('requests[2].patient.subject_number: duplicates requests[1]');
  });

  it('rolls everything back when a subject number is already taken, naming the entry', async () => {
    const existing = newPatient();
    await client.createPatient({ patient: existing, requestId: '' });
    const before = await count('patients');
    const auditBefore = await count('audit_events');
    const requests = [newPatient(), newPatient(), { ...newPatient(), subjectNumber: existing.subjectNumber }, newPatient()].map(
      (patient) => ({ patient, requestId: '' }),
    );
    const error = await expectStatus(client.batchCreatePatients({ requests, requestId: '' }), Status.ALREADY_EXISTS);
    expect(error.details).toContain('requests[2].patient.subject_number');
    expect(await count('patients')).toBe(before);
    expect(await count('audit_events')).toBe(auditBefore);
  });

  it('refuses a batch with an entry at a site the caller cannot see, writing nothing', async () => {
    const requests = [newPatient(), newPatient({ siteId: 'SITE-Z' })].map((patient) => ({ patient, requestId: '' }));
    const error = await expectStatus(client.batchCreatePatients({ requests, requestId: '' }), Status.PERMISSION_DENIED);
    expect(error.details).toContain('requests[1].patient.site_id');
  });

  it('refuses an empty batch and one over 1,000', async () => {
    await expectStatus(client.batchCreatePatients({ requests: [], requestId: '' }), Status.INVALID_ARGUMENT);
    const tooMany = Array.from({ length: 1_001 }, () => ({ patient: newPatient(), requestId: '' }));
    const error = await expectStatus(client.batchCreatePatients({ requests: tooMany, requestId: '' }), Status.INVALID_ARGUMENT);
    expect(error.details).toContain('requests: must have at most 1000 entries');
  });

  it('returns the first result to a retried batch and writes it once', async () => {
    const request = { requests: Array.from({ length: 5 }, () => ({ patient: newPatient(), requestId: '' })), requestId: randomUUID() };
    const first = await client.batchCreatePatients(request);
    const again = await client.batchCreatePatients(request);
    expect(again).toEqual(first);
    expect(await count('patients', 'subject_number = ANY($1::text[])', [request.requests.map((entry) => entry.patient.subjectNumber)])).toBe(5);
  });
});
