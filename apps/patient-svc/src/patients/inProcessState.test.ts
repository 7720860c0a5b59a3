import { patientV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientServiceModule } from '../patientServiceModule.js';
import { expectStatus, newPatient } from '../testing/fixtures.js';

/** patient-svc with no Redis at all (STATE_STORE=memory), as `npm start` runs it on a machine without redis-server. */
let service: TestService;
let admin: pg.Client;
let client: patientV1.PatientServiceClient;

beforeAll(async () => {
  service = await startTestService(patientServiceModule, { STATE_STORE: 'memory', RATE_LIMIT_POINTS: '50' });
  admin = new pg.Client({ connectionString: service.database.url });
  await admin.connect();
  client = service.client(patientV1.PatientServiceDefinition, await service.token({ sub: 'local', roles: ['coordinator'], sites: ['SITE-A'] }));
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

describe('patient-svc keeping its state in process (STATE_STORE=memory)', () => {
  it('has no Redis', () => {
    expect(service.running.runtime.redis).toBeUndefined();
    expect(() => service.redis).toThrow(/STATE_STORE=memory/);
  });

  it('serves GetPatient from its own cache, and a read after an update sees the update', async () => {
    const { patient } = await client.createPatient({ patient: newPatient(), requestId: '' });
    await client.getPatient({ patientId: patient!.patientId });
    const { patient: updated } = await client.updatePatient({
      patient: { ...patient!, treatmentArm: 'ARM-2' },
      updateMask: ['treatment_arm'],
      reason: 'randomisation corrected',
      requestId: '',
    });
    expect((await client.getPatient({ patientId: patient!.patientId })).patient).toEqual(updated);

    // Served from the cache: a change made behind the service is not seen.
    await admin.query("UPDATE patients SET treatment_arm = 'CHANGED-IN-SQL' WHERE patient_id = $1", [patient!.patientId]);
    expect((await client.getPatient({ patientId: patient!.patientId })).patient?.treatmentArm).toBe('ARM-2');
  });

  it('still checks a cached patient against the caller\'s sites', async () => {
    const { patient } = await client.createPatient({ patient: newPatient(), requestId: '' });
    const elsewhere = service.client(patientV1.PatientServiceDefinition, await service.token({ roles: ['coordinator'], sites: ['SITE-B'] }));
    await expectStatus(elsewhere.getPatient({ patientId: patient!.patientId }), Status.NOT_FOUND);
  });

  it('limits each caller in process', async () => {
    const limited = service.client(patientV1.PatientServiceDefinition, await service.token({ sub: 'busy', roles: ['coordinator'], sites: ['SITE-A'] }));
    const { patient } = await limited.createPatient({ patient: newPatient(), requestId: '' });
    let refusal: unknown;
    for (let call = 0; call < 100 && !refusal; call += 1) {
      refusal = await limited.getPatient({ patientId: patient!.patientId }).then(
        () => undefined,
        (error: unknown) => error,
      );
    }
    await expectStatus(Promise.reject(refusal), Status.RESOURCE_EXHAUSTED);
  });

  it('checks sessions in PostgreSQL: one revoked there is refused at once, as in every process', async () => {
    const token = await service.token({ sub: 'leaver', roles: ['coordinator'], sites: ['SITE-A'] });
    const leaver = service.client(patientV1.PatientServiceDefinition, token);
    await leaver.listPatients(patientV1.ListPatientsRequest.fromPartial({}));
    const { sid } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { sid: string };
    await admin.query(`UPDATE sessions SET revoked_at = now(), revoked_by = 'admin' WHERE sid = $1`, [sid]);
    await expectStatus(leaver.listPatients(patientV1.ListPatientsRequest.fromPartial({})), Status.UNAUTHENTICATED);
  });
});
