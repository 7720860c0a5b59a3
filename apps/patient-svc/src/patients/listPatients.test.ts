import { patientV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientServiceModule } from '../patientServiceModule.js';
import { expectStatus, newPatient } from '../testing/fixtures.js';

const { PatientStatus } = patientV1;

let service: TestService;
let admin: pg.Client;
let coordinator: patientV1.PatientServiceClient;

/** Walks every page of a listing and returns all patients. */
async function listAll(client: patientV1.PatientServiceClient, request: Partial<patientV1.ListPatientsRequest>) {
  const all: patientV1.Patient[] = [];
  let pageToken = '';
  do {
    const page = await client.listPatients({ ...patientV1.ListPatientsRequest.fromPartial(request), pageToken });
    all.push(...page.patients);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return all;
}

beforeAll(async () => {
  service = await startTestService(patientServiceModule);
  admin = new pg.Client({ connectionString: service.database.url });
  await admin.connect();
  coordinator = service.client(
    patientV1.PatientServiceDefinition,
    await service.token({ sub: 'lister', roles: ['coordinator'], sites: ['SITE-A', 'SITE-B'] }),
  );
  // 60 at SITE-A (two protocols, two statuses, dates over two months), 20 at SITE-B, 15 at SITE-C.
  const requests = [
    ...Array.from({ length: 60 }, (_, index) =>
      newPatient({
        siteId: 'SITE-A',
        protocolId: index % 3 === 0 ? 'RA002' : 'RA001',
        status: index % 4 === 0 ? PatientStatus.PATIENT_STATUS_SCREENING : PatientStatus.PATIENT_STATUS_ENROLLED,
        enrollmentDate: { year: 2024, month: 1 + (index % 2), day: 1 + (index % 28) },
      }),
    ),
    ...Array.from({ length: 20 }, () => newPatient({ siteId: 'SITE-B' })),
  ].map((patient) => ({ patient, requestId: '' }));
  await coordinator.batchCreatePatients({ requests, requestId: '' });
  await admin.query(
    `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date)
     SELECT 'HIDDEN-' || g, 'SITE-C', 'RA001', '2024-01-10' FROM generate_series(1, 15) AS g`,
  );
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

describe('ListPatients', () => {
  it('walks every patient of the caller’s sites exactly once, newest enrollment first', async () => {
    const all = await listAll(coordinator, { pageSize: 7 });
    expect(all).toHaveLength(80);
    expect(new Set(all.map((patient) => patient.patientId)).size).toBe(80);
    expect(all.every((patient) => patient.siteId !== 'SITE-C')).toBe(true);
    const keys = all.map((patient) => `${JSON.stringify(patient.enrollmentDate)}`);
    const dates = all.map((patient) => patient.enrollmentDate!.year * 10_000 + patient.enrollmentDate!.month * 100 + patient.enrollmentDate!.day);
    expect(dates).toEqual([...dates].sort((a, b) => b - a));
    expect(keys.length).toBe(80);
  });

  it('filters by site, protocol, status and enrollment-date range', async () => {
    const filtered = await listAll(coordinator, {
      siteId: 'SITE-A',
      protocolId: 'RA001',
      status: PatientStatus.PATIENT_STATUS_ENROLLED,
      enrolledOnOrAfter: { year: 2024, month: 2, day: 1 },
      enrolledOnOrBefore: { year: 2024, month: 2, day: 29 },
    });
    const { rows } = await admin.query(
      `SELECT count(*)::int AS n FROM patients WHERE site_id = 'SITE-A' AND protocol_id = 'RA001' AND status = 'ENROLLED'
          AND enrollment_date BETWEEN '2024-02-01' AND '2024-02-29'`,
    );
    expect(filtered.length).toBe(rows[0].n);
    expect(filtered.length).toBeGreaterThan(0);
    for (const patient of filtered) {
      expect(patient).toMatchObject({ siteId: 'SITE-A', protocolId: 'RA001', status: PatientStatus.PATIENT_STATUS_ENROLLED });
      expect(patient.enrollmentDate?.month).toBe(2);
    }
  });

  it('says nothing about a site outside the caller’s sites', async () => {
    const page = await coordinator.listPatients(patientV1.ListPatientsRequest.fromPartial({ siteId: 'SITE-C' }));
    expect(page).toEqual({ patients: [], nextPageToken: '' });
  });

  it('keeps pages correct while patients are inserted between them', async () => {
    const seen: string[] = [];
    let page = await coordinator.listPatients(patientV1.ListPatientsRequest.fromPartial({ siteId: 'SITE-B', pageSize: 5 }));
    seen.push(...page.patients.map((patient) => patient.patientId));
    // New patients enrolled before and after the cursor's position.
    await coordinator.createPatient({ patient: newPatient({ siteId: 'SITE-B', enrollmentDate: { year: 2020, month: 1, day: 1 } }), requestId: '' });
    await coordinator.createPatient({ patient: newPatient({ siteId: 'SITE-B', enrollmentDate: { year: 2025, month: 1, day: 1 } }), requestId: '' });
    while (page.nextPageToken) {
      page = await coordinator.listPatients(
        patientV1.ListPatientsRequest.fromPartial({ siteId: 'SITE-B', pageSize: 5, pageToken: page.nextPageToken }),
      );
      seen.push(...page.patients.map((patient) => patient.patientId));
    }
    expect(new Set(seen).size).toBe(seen.length);
    // All 20 original patients plus the one enrolled after the cursor (2020 sorts last); the 2025 one was before it.
    expect(seen).toHaveLength(21);
  });

  it('refuses a page token with other filters, a forged one, and a negative page size', async () => {
    const first = await coordinator.listPatients(patientV1.ListPatientsRequest.fromPartial({ siteId: 'SITE-A', pageSize: 2 }));
    const reused = await expectStatus(
      coordinator.listPatients(patientV1.ListPatientsRequest.fromPartial({ siteId: 'SITE-B', pageSize: 2, pageToken: first.nextPageToken })),
      Status.INVALID_ARGUMENT,
    );
    expect(reused.details).toContain('page_token');
    const forged = Buffer.from(JSON.stringify({ c: ['2099-01-01', '00000000-0000-0000-0000-000000000000'], f: 'x' })).toString('base64url');
    await expectStatus(
      coordinator.listPatients(patientV1.ListPatientsRequest.fromPartial({ siteId: 'SITE-A', pageToken: forged })),
      Status.INVALID_ARGUMENT,
    );
    await expectStatus(
      coordinator.listPatients(patientV1.ListPatientsRequest.fromPartial({ siteId: 'SITE-A', pageToken: first.nextPageToken.slice(0, -3) })),
      Status.INVALID_ARGUMENT,
    );
    await expectStatus(coordinator.listPatients(patientV1.ListPatientsRequest.fromPartial({ pageSize: -1 })), Status.INVALID_ARGUMENT);
  });

  it('caps the page size at 500 and defaults it to 50', async () => {
    expect((await coordinator.listPatients(patientV1.ListPatientsRequest.fromPartial({}))).patients).toHaveLength(50);
    expect((await coordinator.listPatients(patientV1.ListPatientsRequest.fromPartial({ pageSize: 10_000 }))).patients.length).toBeLessThanOrEqual(500);
  });

  it('records one access event per patient returned', async () => {
    const auditor = service.client(
      patientV1.PatientServiceDefinition,
      await service.token({ sub: 'list-auditee', roles: ['monitor'], sites: ['SITE-B'] }),
    );
    const page = await auditor.listPatients(patientV1.ListPatientsRequest.fromPartial({ pageSize: 4 }));
    await service.running.runtime.accessRecorder.flush();
    const { rows } = await admin.query(
      `SELECT patient_id FROM audit_events WHERE event_type = 'DATA_ACCESS' AND user_id = 'list-auditee'
          AND payload->>'method' = '/clinical.patient.v1.PatientService/ListPatients'`,
    );
    expect(rows.map((row) => row.patient_id).sort()).toEqual(page.patients.map((patient) => patient.patientId).sort());
  });
});
