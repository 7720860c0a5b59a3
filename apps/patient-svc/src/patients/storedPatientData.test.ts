import { patientV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientServiceModule } from '../patientServiceModule.js';
import { newPatient } from '../testing/fixtures.js';
import { patientCacheKey } from './patientCache.js';

let service: TestService;
let admin: pg.Client;
let client: patientV1.PatientServiceClient;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

/** Inserts a patient by plain SQL, as the old system's scripts do, with JSON of any shape. */
async function insertBySql(subjectNumber: string, demographics: unknown, medicalHistory: unknown, enrollmentDate = '2024-02-01'): Promise<string> {
  const { rows } = await admin.query(
    `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, treatment_arm, demographics, medical_history)
     VALUES ($1, 'SITE-S', 'RA001', $2, 'ARM-1', $3, $4) RETURNING patient_id`,
    [subjectNumber, enrollmentDate, JSON.stringify(demographics), JSON.stringify(medicalHistory)],
  );
  return rows[0].patient_id as string;
}

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  service = await startTestService(patientServiceModule);
  admin = new pg.Client({ connectionString: service.database.url });
  await admin.connect();
  client = service.client(patientV1.PatientServiceDefinition, await service.token({ sub: 'reader', roles: ['coordinator'], sites: ['SITE-S'] }));
});

afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await admin?.end();
  await service?.stop();
});

describe('patients written by plain SQL with JSON the contract cannot carry', () => {
  it('are served by GetPatient and ListPatients, keeping what fits and dropping the rest', async () => {
    const misfit = await insertBySql(
      'SQL-MISFIT-1',
      { sex: 'woman', birth_year: 45.5, race: 'white', ethnicity: 7, height_cm: '170', weight_kg: 61.5 },
      {
        conditions: [
          { code: 'M06.9', description: 'RA', onset_date: '03/15/2020', ongoing: 'yes' },
          'not a condition',
          { code: 12, onset_date: '2020-02-30' },
          { code: 'I10', onset_date: '2019-07-04', ongoing: true },
        ],
        medications: 'methotrexate',
        allergies: ['penicillin', 3, null],
      },
    );
    const outOfRange = await insertBySql('SQL-MISFIT-2', { birth_year: 1e12, race: ['Asian', 5] }, { medications: [{ name: 'x', start_date: 20200101 }] }, 'infinity');

    const expected = patientV1.Patient.fromPartial({
      demographics: { weightKg: 61.5 },
      medicalHistory: {
        conditions: [
          { code: 'M06.9', description: 'RA' },
          { code: '' },
          { code: 'I10', onsetDate: { year: 2019, month: 7, day: 4 }, ongoing: true },
        ],
        allergies: ['penicillin'],
      },
    });
    // Twice: a miss (loaded and cached), then a hit.
    for (let read = 0; read < 2; read += 1) {
      const { patient } = await client.getPatient({ patientId: misfit });
      expect(patient).toMatchObject({ subjectNumber: 'SQL-MISFIT-1', enrollmentDate: { year: 2024, month: 2, day: 1 } });
      expect(patient?.demographics).toEqual(expected.demographics);
      expect(patient?.medicalHistory).toEqual(expected.medicalHistory);
    }
    await expect.poll(() => service.redis.exists(patientCacheKey(misfit))).toBe(1);

    const { patient: other } = await client.getPatient({ patientId: outOfRange });
    expect(other?.demographics).toEqual(patientV1.Demographics.fromPartial({ race: ['Asian'] }));
    expect(other?.medicalHistory?.medications).toEqual([patientV1.Medication.fromPartial({ name: 'x' })]);
    expect(other?.enrollmentDate).toBeUndefined();

    const listed = await client.listPatients(patientV1.ListPatientsRequest.fromPartial({ siteId: 'SITE-S' }));
    expect(listed.patients.map((patient) => patient.patientId).sort()).toEqual([misfit, outOfRange].sort());
    expect(listed.patients.find((patient) => patient.patientId === misfit)?.medicalHistory).toEqual(expected.medicalHistory);

    // The process is still up and nothing escaped as an unhandled rejection.
    expect((await client.getPatient({ patientId: misfit })).patient?.patientId).toBe(misfit);
    expect(unhandled).toEqual([]);
  });

  it('still reads back well-formed data unchanged', async () => {
    const { patient } = await service
      .client(patientV1.PatientServiceDefinition, await service.token({ sub: 'w', roles: ['coordinator'], sites: ['SITE-S'] }))
      .createPatient({ patient: newPatient({ siteId: 'SITE-S' }), requestId: '' });
    await service.redis.del(patientCacheKey(patient!.patientId));
    const { patient: read } = await client.getPatient({ patientId: patient!.patientId });
    expect(read).toEqual(patient);
  });
});

describe('a write whose cache store fails', () => {
  it('is still what the next reads return, and the old entry is deleted once Redis answers', async () => {
    const writer = service.client(patientV1.PatientServiceDefinition, await service.token({ sub: 'w', roles: ['coordinator'], sites: ['SITE-S'] }));
    const { patient } = await writer.createPatient({ patient: newPatient({ siteId: 'SITE-S' }), requestId: '' });
    const key = patientCacheKey(patient!.patientId);
    const { redis } = service;
    const { breaker } = service.running.runtime;
    expect(await redis.exists(key)).toBe(1);

    // Redis trouble at the moment of the write: the breaker opens and refuses the store.
    for (let failure = 0; failure < 5; failure += 1) {
      breaker.recordFailure();
    }
    expect(breaker.isOpen()).toBe(true);
    const { patient: updated } = await writer.updatePatient({
      patient: { ...patient!, treatmentArm: 'ARM-2' },
      updateMask: ['treatment_arm'],
      reason: 'corrected',
      requestId: '',
    });
    breaker.recordSuccess();
    expect(breaker.isOpen()).toBe(false);

    // The old record is still in Redis (until the repair, within a second), yet reads return the new one.
    expect(await redis.exists(key)).toBe(1);
    for (let read = 0; read < 3; read += 1) {
      const { patient: current } = await client.getPatient({ patientId: patient!.patientId });
      expect(current).toEqual(updated);
    }
    // Within a repair interval on a quiet machine; the bound is generous for a busy one.
    await expect.poll(() => redis.exists(key), { timeout: 60_000 }).toBe(0);
    expect((await client.getPatient({ patientId: patient!.patientId })).patient).toEqual(updated);
  });
});
