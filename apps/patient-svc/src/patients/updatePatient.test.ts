import { randomUUID } from 'node:crypto';
import { patientV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientServiceModule } from '../patientServiceModule.js';
import { expectStatus, newPatient } from '../testing/fixtures.js';
import { patientCacheKey, patientCodec } from './patientCache.js';
import { versionOfEtag } from './patientRecord.js';

const { PatientStatus } = patientV1;

let service: TestService;
let admin: pg.Client;
let client: patientV1.PatientServiceClient;

async function created(overrides: Partial<patientV1.Patient> = {}): Promise<patientV1.Patient> {
  return (await client.createPatient({ patient: newPatient(overrides), requestId: '' })).patient!;
}

beforeAll(async () => {
  service = await startTestService(patientServiceModule);
  admin = new pg.Client({ connectionString: service.database.url });
  await admin.connect();
  client = service.client(patientV1.PatientServiceDefinition, await service.token({ sub: 'updater', roles: ['coordinator'], sites: ['SITE-A'] }));
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

/**
 * Puts `patient` (an earlier version) back in the cache, as it stays when the
 * process that committed a write died before its cache write.
 */
async function cacheAsBeforeTheWrite(patient: patientV1.Patient): Promise<void> {
  const { cache, config } = service.running.runtime;
  const key = patientCacheKey(patient.patientId);
  await cache.invalidate(key);
  await cache.store(key, patientCodec, config.cacheTtlSeconds.patient, { value: patient, version: Number(versionOfEtag(patient.etag)) });
  expect((await client.getPatient({ patientId: patient.patientId })).patient).toEqual(patient);
}

describe('UpdatePatient', () => {
  it('changes only the masked fields, and a read right after sees the change (through the cache)', async () => {
    const patient = await created();
    await client.getPatient({ patientId: patient.patientId });
    const { patient: updated } = await client.updatePatient({
      patient: { ...patient, treatmentArm: 'ARM-2', protocolId: 'IGNORED-NOT-IN-MASK' },
      updateMask: ['treatment_arm'],
      reason: 'randomisation corrected',
      requestId: '',
    });
    expect(updated).toMatchObject({ treatmentArm: 'ARM-2', protocolId: 'RA001' });
    expect(updated!.etag).not.toBe(patient.etag);
    const { patient: read } = await client.getPatient({ patientId: patient.patientId });
    expect(read).toEqual(updated);

    const { rows } = await admin.query(
      `SELECT reason, user_id, payload FROM audit_events WHERE entity_id = $1 AND action = 'UPDATE'`,
      [patient.patientId],
    );
    expect(rows).toEqual([
      expect.objectContaining({ reason: 'randomisation corrected', user_id: 'updater' }),
    ]);
    expect(rows[0].payload.old.treatment_arm).toBe('ARM-1');
  });

  it('replaces demographics and medical history as whole documents', async () => {
    const patient = await created();
    const { patient: updated } = await client.updatePatient({
      patient: { ...patient, demographics: patientV1.Demographics.fromPartial({ weightKg: 72.5 }), medicalHistory: undefined },
      updateMask: ['demographics', 'medical_history'],
      reason: '',
      requestId: '',
    });
    expect(updated?.demographics).toEqual(patientV1.Demographics.fromPartial({ weightKg: 72.5 }));
    expect(updated?.medicalHistory).toEqual(patientV1.MedicalHistory.fromPartial({}));
  });

  it('refuses a stale etag with ABORTED and changes nothing', async () => {
    const patient = await created();
    await client.updatePatient({ patient: { ...patient, treatmentArm: 'FIRST' }, updateMask: ['treatment_arm'], reason: '', requestId: '' });
    await expectStatus(
      client.updatePatient({ patient: { ...patient, treatmentArm: 'SECOND' }, updateMask: ['treatment_arm'], reason: '', requestId: '' }),
      Status.ABORTED,
    );
    expect((await client.getPatient({ patientId: patient.patientId })).patient?.treatmentArm).toBe('FIRST');
  });

  it('lets exactly one of two concurrent updates with the same etag win', async () => {
    const patient = await created();
    const attempts = await Promise.allSettled(
      ['X', 'Y', 'Z'].map((arm) =>
        client.updatePatient({ patient: { ...patient, treatmentArm: arm }, updateMask: ['treatment_arm'], reason: '', requestId: '' }),
      ),
    );
    expect(attempts.filter((attempt) => attempt.status === 'fulfilled')).toHaveLength(1);
  });

  it.each([
    [['site_id'], 'site_id is immutable'],
    [['subject_number'], 'subject_number is immutable'],
    [['status'], 'ChangePatientStatus'],
    [['favourite_colour'], 'unknown'],
    [[], 'update_mask'],
  ])('refuses the mask %j with INVALID_ARGUMENT', async (paths, message) => {
    const patient = await created();
    const error = await expectStatus(
      client.updatePatient({ patient, updateMask: paths, reason: '', requestId: '' }),
      Status.INVALID_ARGUMENT,
    );
    expect(error.details).toContain(message);
  });

  it('a retry answered with the first response leaves no older record cached behind it', async () => {
    const patient = await created();
    const request = { patient: { ...patient, treatmentArm: 'ARM-RETRIED' }, updateMask: ['treatment_arm'], reason: '', requestId: randomUUID() };
    const { patient: updated } = await client.updatePatient(request);
    await cacheAsBeforeTheWrite(patient);
    const { patient: retried } = await client.updatePatient(request);
    expect(retried).toEqual(updated);
    expect((await client.getPatient({ patientId: patient.patientId })).patient).toEqual(updated);
  });

  it('answers a patient at another site as NOT_FOUND, like a missing one', async () => {
    const other = service.client(patientV1.PatientServiceDefinition, await service.token({ sub: 'b', roles: ['coordinator'], sites: ['SITE-B'] }));
    const patient = await created();
    await expectStatus(
      other.updatePatient({ patient: { ...patient, treatmentArm: 'B' }, updateMask: ['treatment_arm'], reason: '', requestId: '' }),
      Status.NOT_FOUND,
    );
    await expectStatus(
      client.updatePatient({ patient: { ...patient, patientId: randomUUID() }, updateMask: ['treatment_arm'], reason: '', requestId: '' }),
      Status.NOT_FOUND,
    );
  });
});

describe('ChangePatientStatus', () => {
  it('follows the state machine and records the reason', async () => {
    const patient = await created({ status: PatientStatus.PATIENT_STATUS_SCREENING });
    const enrolled = await client.changePatientStatus({
      patientId: patient.patientId,
      status: PatientStatus.PATIENT_STATUS_ENROLLED,
      reason: 'eligibility confirmed',
      etag: patient.etag,
      requestId: '',
    });
    expect(enrolled.patient?.status).toBe(PatientStatus.PATIENT_STATUS_ENROLLED);
    const withdrawn = await client.changePatientStatus({
      patientId: patient.patientId,
      status: PatientStatus.PATIENT_STATUS_WITHDRAWN,
      reason: 'consent withdrawn',
      etag: enrolled.patient!.etag,
      requestId: '',
    });
    expect(withdrawn.patient?.status).toBe(PatientStatus.PATIENT_STATUS_WITHDRAWN);
    expect((await client.getPatient({ patientId: patient.patientId })).patient?.status).toBe(PatientStatus.PATIENT_STATUS_WITHDRAWN);

    const { rows } = await admin.query(
      `SELECT reason, payload->'new'->>'status' AS status FROM audit_events
        WHERE entity_id = $1 AND action = 'UPDATE' ORDER BY event_seq`,
      [patient.patientId],
    );
    expect(rows).toEqual([
      { reason: 'eligibility confirmed', status: 'ENROLLED' },
      { reason: 'consent withdrawn', status: 'WITHDRAWN' },
    ]);
  });

  it.each([
    [PatientStatus.PATIENT_STATUS_ENROLLED, PatientStatus.PATIENT_STATUS_SCREENING],
    [PatientStatus.PATIENT_STATUS_ENROLLED, PatientStatus.PATIENT_STATUS_SCREEN_FAILED],
    [PatientStatus.PATIENT_STATUS_SCREENING, PatientStatus.PATIENT_STATUS_COMPLETED],
  ])('refuses %s -> %s with FAILED_PRECONDITION', async (from, to) => {
    const patient = await created({ status: from });
    await expectStatus(
      client.changePatientStatus({ patientId: patient.patientId, status: to, reason: 'try', etag: patient.etag, requestId: '' }),
      Status.FAILED_PRECONDITION,
    );
  });

  it('a retry answered with the first response leaves no older record cached behind it', async () => {
    const patient = await created();
    const request = { patientId: patient.patientId, status: PatientStatus.PATIENT_STATUS_COMPLETED, reason: 'last visit', etag: patient.etag, requestId: randomUUID() };
    const { patient: changed } = await client.changePatientStatus(request);
    await cacheAsBeforeTheWrite(patient);
    const { patient: retried } = await client.changePatientStatus(request);
    expect(retried).toEqual(changed);
    expect((await client.getPatient({ patientId: patient.patientId })).patient).toEqual(changed);
  });

  it('never leaves a final status', async () => {
    const patient = await created();
    const done = await client.changePatientStatus({
      patientId: patient.patientId,
      status: PatientStatus.PATIENT_STATUS_COMPLETED,
      reason: 'last visit',
      etag: patient.etag,
      requestId: '',
    });
    await expectStatus(
      client.changePatientStatus({
        patientId: patient.patientId,
        status: PatientStatus.PATIENT_STATUS_WITHDRAWN,
        reason: 'late withdrawal',
        etag: done.patient!.etag,
        requestId: '',
      }),
      Status.FAILED_PRECONDITION,
    );
  });

  it('requires a reason and a current etag', async () => {
    const patient = await created();
    const noReason = await expectStatus(
      client.changePatientStatus({ patientId: patient.patientId, status: PatientStatus.PATIENT_STATUS_COMPLETED, reason: '', etag: patient.etag, requestId: '' }),
      Status.INVALID_ARGUMENT,
    );
    expect(noReason.details).toContain('reason');
    await client.updatePatient({ patient: { ...patient, treatmentArm: 'Q' }, updateMask: ['treatment_arm'], reason: '', requestId: '' });
    await expectStatus(
      client.changePatientStatus({ patientId: patient.patientId, status: PatientStatus.PATIENT_STATUS_COMPLETED, reason: 'done', etag: patient.etag, requestId: '' }),
      Status.ABORTED,
    );
  });
});
