import { randomUUID } from 'node:crypto';
import { vitalsV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import pg from 'pg';
import { vitalsServiceModule } from '../vitalsServiceModule.js';

/** A vitals-svc on its own database, an admin connection to that database, and clients per role and site. */
export interface VitalsTestBed {
  readonly service: TestService;
  readonly admin: pg.Client;
  /** A VitalsService client for these claims. */
  client(claims?: { sub?: string; roles?: string[]; sites?: string[] | '*' }): Promise<ReturnType<TestService['client']> & vitalsV1.VitalsServiceClient>;
  /** Inserts a patient straight in SQL and returns its id. */
  patient(options?: { siteId?: string; status?: string }): Promise<string>;
  /** Readings stored for a patient, in SQL. */
  countReadings(patientId?: string): Promise<number>;
  stop(): Promise<void>;
}

export async function startVitalsTestBed(env: Record<string, string> = {}): Promise<VitalsTestBed> {
  const service = await startTestService(vitalsServiceModule, env);
  const admin = new pg.Client({ connectionString: service.database.url });
  await admin.connect();
  return {
    service,
    admin,
    async client(claims = {}) {
      const token = await service.token({
        sub: claims.sub ?? 'coordinator-1',
        roles: (claims.roles ?? ['coordinator']) as never,
        sites: claims.sites ?? ['SITE-A'],
      });
      return service.client(vitalsV1.VitalsServiceDefinition, token) as never;
    },
    async patient(options = {}) {
      const { rows } = await admin.query<{ patient_id: string }>(
        `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, status)
         VALUES ($1, $2, 'RA001', date '2024-01-15', $3) RETURNING patient_id`,
        [`V-${randomUUID().slice(0, 12)}`, options.siteId ?? 'SITE-A', options.status ?? 'ENROLLED'],
      );
      return rows[0]!.patient_id;
    },
    async countReadings(patientId) {
      const { rows } = patientId
        ? await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM vital_signs WHERE patient_id = $1', [patientId])
        : await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM vital_signs');
      return rows[0]!.n;
    },
    async stop() {
      await admin.end();
      await service.stop();
    },
  };
}

/** A valid reading of `patientId`, `minutesAgo` before now. */
export function reading(patientId: string, minutesAgo = 1, overrides: Partial<vitalsV1.VitalSigns> = {}): vitalsV1.VitalSigns {
  return vitalsV1.VitalSigns.fromPartial({
    patientId,
    measurementTime: new Date(Date.now() - minutesAgo * 60_000),
    systolicBp: 120,
    diastolicBp: 80,
    heartRate: 70,
    temperatureCelsius: 36.6,
    ...overrides,
  });
}

export { expectStatus } from '@clinical/server-kit/testing';
