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

/** CreatePatient, one new patient per call (audit row and cache fill included). */
export async function createPatient(environment: BenchEnvironment, settings: RunSettings): Promise<ScenarioReport> {
  const token = await environment.token({ roles: ['coordinator'], sites: SITES });
  const run = randomUUID().slice(0, 8);
  const patient = (index: number) =>
    patientV1.Patient.fromPartial({
      subjectNumber: `C${run}-${index}`,
      siteId: SITES[Math.abs(index) % SITES.length],
      protocolId: 'RA001',
      enrollmentDate: { year: 2024, month: 3, day: 1 + (Math.abs(index) % 28) },
      treatmentArm: 'ARM-1',
      demographics: { sex: patientV1.Sex.SEX_MALE, birthYear: 1970, race: ['White'], heightCm: 180, weightKg: 80 },
    });
  return withPatientService(environment, async (service) => {
    const caller = unaryCaller(
      service.address,
      '/clinical.patient.v1.PatientService/CreatePatient',
      (request: patientV1.CreatePatientRequest) => patientV1.CreatePatientRequest.encode(request).finish(),
      (bytes) => patientV1.CreatePatientResponse.decode(bytes),
      token,
    );
    try {
      const sample = await caller.call({ patient: patient(-1), requestId: '' });
      const baseline = await measureGrpcBaseline(
        { patient: patient(0), requestId: '' },
        (request: patientV1.CreatePatientRequest) => patientV1.CreatePatientRequest.encode(request).finish(),
        (bytes) => patientV1.CreatePatientResponse.decode(bytes),
        patientV1.CreatePatientResponse.encode(sample).finish(),
        settings,
      );
      const measured = await runLoad({
        ...settings,
        call: (index) => caller.call({ patient: patient(index), requestId: '' }).then(() => undefined),
      });
      return {
        scenario: 'create-patient',
        baseline,
        measured,
        concurrency: settings.concurrency,
        servicePeakRssMiB: service.peakRssMiB(),
      };
    } finally {
      caller.close();
    }
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
  'batch-create-1000': batchCreate1000,
};
