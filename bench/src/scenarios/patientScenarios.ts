import { randomUUID } from 'node:crypto';
import { patientV1 } from '@clinical/contracts';
import pg from 'pg';
import type { BenchEnvironment } from '../benchEnvironment.js';
import { measureGrpcBaseline } from '../baseline.js';
import { runLoad } from '../loadGenerator.js';
import { compareWithFloor } from '../floorComparison.js';
import { startServiceProcess, unaryCaller, type ServerProcess } from '../processes.js';
import type { ScenarioReport } from '../report.js';
import { measureAtEachLoad, type RunSettings, type Scenario } from '../scenario.js';

export const SITES = ['SITE-01', 'SITE-02', 'SITE-03', 'SITE-04'];

/** Inserts `count` realistic patients straight in SQL (not through the service, so nothing is cached). */
export async function seedPatients(databaseUrl: string, count: number): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ patient_id: string }>(
      `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, treatment_arm, demographics, medical_history)
       SELECT 'B' || $2 || '-' || g, ($3::text[])[1 + g % 4], 'RA001', date '2024-01-01' + (g % 300), 'ARM-' || (g % 2),
              jsonb_build_object('sex', 'FEMALE', 'birth_year', 1950 + g % 50, 'race', jsonb_build_array('Asian'),
                                 'height_cm', 150 + g % 40, 'weight_kg', 50 + g % 50),
              jsonb_build_object('conditions', jsonb_build_array(jsonb_build_object('code', 'M06.9',
                                 'description', 'Rheumatoid arthritis', 'onset_date', '2019-03-02', 'ongoing', true)),
                                 'allergies', jsonb_build_array('penicillin'))
         FROM generate_series(1, $1) AS g
       RETURNING patient_id`,
      [count, randomUUID().slice(0, 8), SITES],
    );
    return rows.map((row) => row.patient_id);
  } finally {
    await client.end();
  }
}

/** Inserts `count` patients like seedPatients, returning each one's id and row version (for its etag). */
async function seedPatientVersions(databaseUrl: string, count: number): Promise<{ patientId: string; rowVersion: string }[]> {
  const ids = await seedPatients(databaseUrl, count);
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ patient_id: string; row_version: string }>(
      'SELECT patient_id, row_version::text AS row_version FROM patients WHERE patient_id = ANY($1::uuid[])',
      [ids],
    );
    return rows.map((row) => ({ patientId: row.patient_id, rowVersion: row.row_version }));
  } finally {
    await client.end();
  }
}

async function withPatientService<T>(environment: BenchEnvironment, use: (service: ServerProcess) => Promise<T>): Promise<T> {
  const service = await startServiceProcess('patient-svc', environment.serviceEnv);
  try {
    return await use(service);
  } finally {
    await service.stop();
  }
}

/** A GetPatient caller on the bench's raw client. */
export function getPatientCaller(address: string, token: string) {
  return unaryCaller(
    address,
    '/clinical.patient.v1.PatientService/GetPatient',
    (request: patientV1.GetPatientRequest) => patientV1.GetPatientRequest.encode(request).finish(),
    (bytes) => patientV1.GetPatientResponse.decode(bytes),
    token,
  );
}

const GET_PATIENT_PATH = '/clinical.patient.v1.PatientService/GetPatient';
const CREATE_PATIENT_PATH = '/clinical.patient.v1.PatientService/CreatePatient';
const UPDATE_PATIENT_PATH = '/clinical.patient.v1.PatientService/UpdatePatient';
const LIST_PATIENTS_PATH = '/clinical.patient.v1.PatientService/ListPatients';

/** GetPatient's statement on a miss, as the service sends it. */
const SELECT_PATIENT = `SELECT patient_id, subject_number, site_id, protocol_id, enrollment_date::text AS enrollment_date,
       treatment_arm, demographics, medical_history, status, created_at, updated_at, row_version
  FROM patients WHERE patient_id = $1`;

const getPatientRequests = (ids: readonly string[]) =>
  ids.map((patientId) => patientV1.GetPatientRequest.encode({ patientId }).finish());

/**
 * GetPatient served from the cache (every id read once before measuring),
 * against the bare echo answering with the same bytes; and GetPatient
 * missing it (every call a patient never read), against its database-read
 * floor (the same SELECT through raw pg, the same response encoded on every
 * call). Each at each load shape, with the CPU per call of both sides.
 */
export async function getPatient(
  environment: BenchEnvironment,
  settings: RunSettings,
  mode: 'hit' | 'miss',
): Promise<ScenarioReport[]> {
  // Misses need ids never read at each shape: as many as two shapes' calls at a generous rate.
  const poolSize = mode === 'hit' ? 1_000 : Math.max(20_000, Math.ceil(((settings.durationMs + settings.warmupMs) / 1_000) * 3_000));
  const ids = await seedPatients(environment.database.url, mode === 'hit' ? poolSize : poolSize * 2);
  const token = await environment.token({ roles: ['monitor'], sites: SITES });
  return withPatientService(environment, async (service) => {
    const caller = getPatientCaller(service.address, token);
    let sample: patientV1.GetPatientResponse;
    try {
      sample = await caller.call({ patientId: ids[0]! });
      if (mode === 'hit') {
        for (const patientId of ids) {
          await caller.call({ patientId });
        }
      }
    } finally {
      caller.close();
    }
    const response = Buffer.from(patientV1.GetPatientResponse.encode(sample).finish()).toString('base64');
    let shapes = 0;
    return measureAtEachLoad(settings, {}, async (shape) => {
      // A miss shape takes its own slice of ids (skipping the one read for the sample).
      const slice = mode === 'hit' ? ids : ids.slice(1 + shapes * poolSize, 1 + (shapes + 1) * poolSize);
      shapes += 1;
      return [
        await compareWithFloor({
          scenario: `get-patient-${mode}`,
          baselineName: mode === 'hit' ? 'bare grpc-js echo' : 'database-read floor',
          service,
          floor:
            mode === 'hit'
              ? { path: GET_PATIENT_PATH, response }
              : {
                  path: GET_PATIENT_PATH,
                  response,
                  responseType: 'patientV1.GetPatientResponse',
                  requestType: 'patientV1.GetPatientRequest',
                  databaseUrl: environment.database.url,
                  statements: [{ text: SELECT_PATIENT, values: [{ request: 'patientId' }] }],
                },
          authorization: `Bearer ${token}`,
          serviceRequests: getPatientRequests(slice),
          shape,
        }),
      ];
    });
  });
}

/**
 * What auditing reads costs: GetPatient (cache hit) against the same service
 * with ACCESS_AUDIT=off, side by side, CPU per call and throughput.
 */
export async function accessAuditCost(environment: BenchEnvironment, settings: RunSettings): Promise<ScenarioReport[]> {
  const ids = await seedPatients(environment.database.url, 1_000);
  const token = await environment.token({ roles: ['monitor'], sites: SITES });
  const unaudited = await startServiceProcess('patient-svc', { ...environment.serviceEnv, ACCESS_AUDIT: 'off' });
  try {
    return await withPatientService(environment, async (service) => {
      for (const address of [service.address, unaudited.address]) {
        const caller = getPatientCaller(address, token);
        try {
          for (const patientId of ids) {
            await caller.call({ patientId });
          }
        } finally {
          caller.close();
        }
      }
      return [
        await compareWithFloor({
          scenario: 'access-audit-cost',
          baselineName: 'the same service, ACCESS_AUDIT=off',
          service,
          floor: { ...unaudited, path: GET_PATIENT_PATH },
          authorization: `Bearer ${token}`,
          serviceRequests: getPatientRequests(ids),
          shape: { ...settings, label: `c=${settings.concurrency}` },
        }),
      ];
    });
  } finally {
    await unaudited.stop();
  }
}

/** The columns every patient statement returns, as the service selects them. */
const PATIENT_COLUMNS = `patient_id, subject_number, site_id, protocol_id, enrollment_date::text AS enrollment_date,
       treatment_arm, demographics, medical_history, status, created_at, updated_at, row_version`;

/** The audit context every write sets first, in its transaction (what the service's mutations run). */
const setAuditContext = (reason = '') => ({
  text: `SELECT set_config('app.user_id', $1, true), set_config('app.request_id', $2, true),
              set_config('app.trace_id', $3, true), set_config('app.reason', $4, true),
              set_config('app.client_ip', $5, true)`,
  values: ['bench', '', '0af7651916cd43dd8448eb211c80319c', reason, '127.0.0.1'],
});
const UPDATE_REASON = 'protocol amendment 3';

/** Requests enough for two shapes at a generous rate, none sent twice. */
const writesFor = (settings: RunSettings) => Math.max(20_000, Math.ceil(((settings.durationMs + settings.warmupMs) / 1_000) * 2_500));

const DEMOGRAPHICS = { sex: patientV1.Sex.SEX_MALE, birthYear: 1970, race: ['White'], heightCm: 180, weightKg: 80 };
const DEMOGRAPHICS_JSON = JSON.stringify({ sex: 'MALE', birth_year: 1970, race: ['White'], height_cm: 180, weight_kg: 80 });

/**
 * CreatePatient, one new patient per call (its audit row by trigger, the
 * cache fill after commit), against its write floor: the same transaction
 * (BEGIN, the audit context, the INSERT … RETURNING with its trigger, COMMIT)
 * through raw pg behind bare grpc-js, encoding the same response.
 */
export async function createPatient(environment: BenchEnvironment, settings: RunSettings): Promise<ScenarioReport[]> {
  const token = await environment.token({ roles: ['coordinator'], sites: SITES });
  const run = randomUUID().slice(0, 8);
  const patient = (index: number) =>
    patientV1.Patient.fromPartial({
      subjectNumber: `C${run}-${index}`,
      siteId: SITES[Math.abs(index) % SITES.length],
      protocolId: 'RA001',
      enrollmentDate: { year: 2024, month: 3, day: 1 + (Math.abs(index) % 28) },
      treatmentArm: 'ARM-1',
      demographics: DEMOGRAPHICS,
    });
  const count = writesFor(settings);
  return withPatientService(environment, async (service) => {
    const caller = unaryCaller(
      service.address,
      CREATE_PATIENT_PATH,
      (request: patientV1.CreatePatientRequest) => patientV1.CreatePatientRequest.encode(request).finish(),
      (bytes) => patientV1.CreatePatientResponse.decode(bytes),
      token,
    );
    let sample: patientV1.CreatePatientResponse;
    try {
      sample = await caller.call({ patient: patient(-1), requestId: '' });
    } finally {
      caller.close();
    }
    let shapes = 0;
    return measureAtEachLoad(settings, {}, async (shape) => {
      const first = shapes * count;
      shapes += 1;
      return [
        await compareWithFloor({
          scenario: 'create-patient',
          baselineName: 'write floor',
          service,
          floor: {
            path: CREATE_PATIENT_PATH,
            response: Buffer.from(patientV1.CreatePatientResponse.encode(sample).finish()).toString('base64'),
            responseType: 'patientV1.CreatePatientResponse',
            databaseUrl: environment.database.url,
            transaction: true,
            statements: [
              setAuditContext(),
              {
                text: `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, treatment_arm,
                                             demographics, medical_history, status)
                       VALUES ($1, $2, $3, $4::date, $5, $6::jsonb, $7::jsonb, $8) RETURNING ${PATIENT_COLUMNS}`,
                values: [{ unique: `F${run}-` }, SITES[0]!, 'RA001', '2024-03-01', 'ARM-1', DEMOGRAPHICS_JSON, '{}', 'ENROLLED'],
              },
            ],
          },
          authorization: `Bearer ${token}`,
          serviceRequests: Array.from({ length: count }, (_, index) =>
            patientV1.CreatePatientRequest.encode({ patient: patient(first + index), requestId: '' }).finish(),
          ),
          shape,
        }),
      ];
    });
  });
}

/**
 * UpdatePatient of a patient's treatment arm and demographics, each call a
 * patient not yet updated (with its current etag), against its write floor:
 * the same guarded UPDATE … RETURNING (and its audit trigger) in the same
 * transaction through raw pg.
 */
export async function updatePatient(environment: BenchEnvironment, settings: RunSettings): Promise<ScenarioReport[]> {
  const token = await environment.token({ roles: ['coordinator'], sites: SITES });
  const count = writesFor(settings);
  // Two shapes for the service and two for the floor, each updating patients nobody updated yet.
  const patients = await seedPatientVersions(environment.database.url, count * 4);
  const request = (entry: { patientId: string; rowVersion: string }) =>
    patientV1.UpdatePatientRequest.encode({
      patient: patientV1.Patient.fromPartial({ patientId: entry.patientId, etag: `"${entry.rowVersion}"`, treatmentArm: 'ARM-2', demographics: DEMOGRAPHICS }),
      updateMask: ['treatment_arm', 'demographics'],
      requestId: '',
      reason: UPDATE_REASON,
    }).finish();
  return withPatientService(environment, async (service) => {
    const caller = unaryCaller(
      service.address,
      UPDATE_PATIENT_PATH,
      (bytes: Uint8Array) => bytes,
      (bytes) => patientV1.UpdatePatientResponse.decode(bytes),
      token,
    );
    let sample: patientV1.UpdatePatientResponse;
    try {
      sample = await caller.call(request(patients.pop()!));
    } finally {
      caller.close();
    }
    let shapes = 0;
    return measureAtEachLoad(settings, {}, async (shape) => {
      const slice = (part: number) => patients.slice((shapes * 2 + part) * count, (shapes * 2 + part + 1) * count).map(request);
      const [serviceRequests, floorRequests] = [slice(0), slice(1)];
      shapes += 1;
      return [
        await compareWithFloor({
          scenario: 'update-patient',
          baselineName: 'write floor',
          service,
          floor: {
            path: UPDATE_PATIENT_PATH,
            response: Buffer.from(patientV1.UpdatePatientResponse.encode(sample).finish()).toString('base64'),
            responseType: 'patientV1.UpdatePatientResponse',
            requestType: 'patientV1.UpdatePatientRequest',
            databaseUrl: environment.database.url,
            transaction: true,
            statements: [
              setAuditContext(UPDATE_REASON),
              {
                text: `UPDATE patients SET treatment_arm = $1, demographics = $2::jsonb
                        WHERE patient_id = $3 AND site_id = ANY($4::text[]) AND row_version = $5
                       RETURNING ${PATIENT_COLUMNS}`,
                values: ['ARM-2', DEMOGRAPHICS_JSON, { request: 'patient.patientId' }, SITES, { request: 'patient.etag', match: '^"(\\d+)"$' }],
              },
            ],
          },
          authorization: `Bearer ${token}`,
          serviceRequests,
          floorRequests,
          shape,
        }),
      ];
    });
  });
}

/**
 * ListPatients, a page of 50 at one site (50 access events each), against its
 * database-read floor: the same keyset SELECT through raw pg, the same page
 * encoded on every call.
 */
export async function listPatientsPage(environment: BenchEnvironment, settings: RunSettings): Promise<ScenarioReport[]> {
  await seedPatients(environment.database.url, 20_000);
  const token = await environment.token({ roles: ['monitor'], sites: SITES });
  const listRequest = patientV1.ListPatientsRequest.fromPartial({ siteId: SITES[1], pageSize: 50 });
  return withPatientService(environment, async (service) => {
    const caller = unaryCaller(
      service.address,
      LIST_PATIENTS_PATH,
      (request: patientV1.ListPatientsRequest) => patientV1.ListPatientsRequest.encode(request).finish(),
      (bytes) => patientV1.ListPatientsResponse.decode(bytes),
      token,
    );
    let sample: patientV1.ListPatientsResponse;
    try {
      sample = await caller.call(listRequest);
    } finally {
      caller.close();
    }
    return measureAtEachLoad(settings, {}, async (shape) => [
      await compareWithFloor({
        scenario: 'list-patients',
        baselineName: 'database-read floor',
        service,
        floor: {
          path: LIST_PATIENTS_PATH,
          response: Buffer.from(patientV1.ListPatientsResponse.encode(sample).finish()).toString('base64'),
          responseType: 'patientV1.ListPatientsResponse',
          databaseUrl: environment.database.url,
          statements: [
            {
              text: `SELECT ${PATIENT_COLUMNS} FROM patients
                      WHERE site_id = ANY($1::text[]) AND site_id = $2
                      ORDER BY enrollment_date DESC, patient_id DESC LIMIT 51`,
              values: [SITES, SITES[1]!],
            },
          ],
        },
        authorization: `Bearer ${token}`,
        serviceRequests: [patientV1.ListPatientsRequest.encode(listRequest).finish()],
        shape,
      }),
    ]);
  });
}

/**
 * BatchCreatePatients of 1,000 patients per call (one audit row each, cache
 * fills after commit), one call at a time; the baseline answers with a
 * response of the same size.
 */
export async function batchCreate1000(environment: BenchEnvironment, settings: RunSettings): Promise<ScenarioReport> {
  const token = await environment.token({ roles: ['coordinator'], sites: SITES });
  const run = randomUUID().slice(0, 8);
  const batch = (index: number): patientV1.BatchCreatePatientsRequest => ({
    requests: Array.from({ length: 1_000 }, (_, entry) => ({
      patient: patientV1.Patient.fromPartial({
        subjectNumber: `B${run}-${index}-${entry}`,
        siteId: SITES[entry % SITES.length],
        protocolId: 'RA001',
        enrollmentDate: { year: 2024, month: 3, day: 1 + (entry % 28) },
        treatmentArm: 'ARM-1',
        demographics: { sex: patientV1.Sex.SEX_FEMALE, birthYear: 1960 + (entry % 40), race: ['Black'], heightCm: 170, weightKg: 70 },
      }),
      requestId: '',
    })),
    requestId: '',
  });
  const oneAtATime = { ...settings, concurrency: 1 };
  return withPatientService(environment, async (service) => {
    const caller = unaryCaller(
      service.address,
      '/clinical.patient.v1.PatientService/BatchCreatePatients',
      (request: patientV1.BatchCreatePatientsRequest) => patientV1.BatchCreatePatientsRequest.encode(request).finish(),
      (bytes) => patientV1.BatchCreatePatientsResponse.decode(bytes),
      token,
    );
    try {
      const sample = await caller.call(batch(-1));
      const baseline = await measureGrpcBaseline(
        batch(-2),
        (request: patientV1.BatchCreatePatientsRequest) => patientV1.BatchCreatePatientsRequest.encode(request).finish(),
        (bytes) => patientV1.BatchCreatePatientsResponse.decode(bytes),
        patientV1.BatchCreatePatientsResponse.encode(sample).finish(),
        oneAtATime,
      );
      const measured = await runLoad({ ...oneAtATime, call: (index) => caller.call(batch(index)).then(() => undefined) });
      return {
        scenario: 'batch-create-1000',
        baseline,
        measured,
        concurrency: 1,
        servicePeakRssMiB: service.peakRssMiB(),
        extra: { patientsPerSecond: Math.round(measured.rps * 1_000) },
      };
    } finally {
      caller.close();
    }
  });
}

/** The patient-svc benchmarks, by name. */
export const patientScenarios: Record<string, Scenario> = {
  'get-patient-hit': (environment, settings) => getPatient(environment, settings, 'hit'),
  'get-patient-miss': (environment, settings) => getPatient(environment, settings, 'miss'),
  'create-patient': createPatient,
  'update-patient': updatePatient,
  'list-patients': listPatientsPage,
  'access-audit-cost': accessAuditCost,
  'batch-create-1000': batchCreate1000,
};
