import { analyticsV1 } from '@clinical/contracts';
import { seededRandom } from '@clinical/testing';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { startAnalyticsService, startReplica, type AnalyticsTestService } from './testing/analyticsTestService.js';
import { expectServedFiguresMatchTables } from './testing/figuresMatchTables.js';
import { insertRandomTrial, insertVitals, STATUSES } from './testing/trialData.js';

/**
 * After each refresh, every figure the service returns (and every row of
 * patient_analytics) is compared with the same aggregate computed straight
 * from the tables, on random trials. Means are rounded to two decimals, so
 * they must agree within 0.005. Each refresh folds in only what changed
 * since the previous one: the figures must still be the tables'.
 */
let service: AnalyticsTestService;
let admin: analyticsV1.AnalyticsServiceClient;

const SEED = Number(process.env.ANALYTICS_TEST_SEED ?? Date.now() % 1_000_000);

const expectServedFiguresMatch = () => expectServedFiguresMatchTables(admin, service.admin, `seed ${SEED},`);

beforeAll(async () => {
  service = await startAnalyticsService({ ANALYTICS_REFRESH_SCHEDULER: 'off' });
  admin = service.client(analyticsV1.AnalyticsServiceDefinition, await service.token({ sub: 'admin', roles: ['admin'], sites: '*' }));
});

afterAll(async () => {
  await service?.stop();
});

describe(`the view against the tables (ANALYTICS_TEST_SEED=${SEED})`, () => {
  it('matches on a random trial', async () => {
    const random = seededRandom(SEED);
    const sites = Array.from({ length: 2 + Math.floor(random() * 6) }, (_, index) => `SITE-${index}-${SEED % 97}`);
    const protocols = Array.from({ length: 1 + Math.floor(random() * 4) }, (_, index) => `PROT-${index}`);
    await insertRandomTrial(service.admin, { seed: SEED, patients: 400, sites, protocols, maxVitalsPerPatient: 12 });
    await admin.refreshAnalytics({});
    await expectServedFiguresMatch();
  });

  it('matches again after statuses change, readings arrive and are deleted, and sites appear', async () => {
    const random = seededRandom(SEED + 1);
    await service.admin.query(
      `UPDATE patients SET status = ($1::text[])[1 + floor(random() * 5)::int]
        WHERE patient_id IN (SELECT patient_id FROM patients ORDER BY patient_id LIMIT 120)`,
      [STATUSES],
    );
    const { rows: some } = await service.admin.query<{ patient_id: string }>('SELECT patient_id FROM patients ORDER BY patient_id LIMIT 50');
    await insertVitals(
      service.admin,
      some.map(({ patient_id }) => ({
        patient: patient_id,
        systolic: random() < 0.5 ? null : 100 + Math.floor(random() * 60),
        diastolic: random() < 0.5 ? null : 60 + Math.floor(random() * 30),
        heart: 60,
        temperature: random() < 0.5 ? null : '37.1',
      })),
    );
    await service.admin.query('DELETE FROM vital_signs WHERE vital_id IN (SELECT vital_id FROM vital_signs ORDER BY vital_id LIMIT 40)');
    await insertRandomTrial(service.admin, { seed: SEED + 2, patients: 60, sites: ['NEW-SITE'], protocols: ['PROT-0', 'PROT-NEW'], maxVitalsPerPatient: 3, nullChance: 0.9 });
    await admin.refreshAnalytics({});
    await expectServedFiguresMatch();
  });

  it('counts days to the UTC date of the refresh, whatever time zone the database sessions have', async () => {
    // A zone whose date differs from UTC's right now (UTC+14 in the afternoon, UTC-12 in the morning).
    const zone = new Date().getUTCHours() >= 12 ? 'Etc/GMT-14' : 'Etc/GMT+12';
    await service.admin.query(`ALTER DATABASE "${service.database.name}" SET timezone = '${zone}'`);
    // A new replica's sessions start in that zone.
    const replica = await startReplica(service, service.module);
    try {
      const token = await service.token({ roles: ['admin'], sites: '*' });
      await replica.client(analyticsV1.AnalyticsServiceDefinition, token).refreshAnalytics({});
      await expectServedFiguresMatch();
    } finally {
      await replica.stop();
      await service.admin.query(`ALTER DATABASE "${service.database.name}" RESET timezone`);
    }
  });

  it('matches with patients that have no readings and readings that carry no measure', async () => {
    await insertRandomTrial(service.admin, { seed: SEED + 3, patients: 25, sites: ['EMPTY-SITE'], protocols: ['NONE'], maxVitalsPerPatient: 0 });
    await insertRandomTrial(service.admin, { seed: SEED + 4, patients: 25, sites: ['NULL-SITE'], protocols: ['NULLS'], maxVitalsPerPatient: 4, nullChance: 1 });
    await admin.refreshAnalytics({});
    await expectServedFiguresMatch();
  });

  it('matches again after patients move between sites and protocols, dates and readings are corrected, and patients leave', async () => {
    const random = seededRandom(SEED + 5);
    const { rows: patients } = await service.admin.query<{ patient_id: string; site_id: string; protocol_id: string }>(
      'SELECT patient_id, site_id, protocol_id FROM patients ORDER BY patient_id',
    );
    const pick = () => patients[Math.floor(random() * patients.length)]!;
    const moved = Array.from({ length: 30 }, pick);
    await service.admin.query(
      `UPDATE patients AS p SET site_id = m.site_id, protocol_id = m.protocol_id
         FROM unnest($1::uuid[], $2::text[], $3::text[]) AS m(patient_id, site_id, protocol_id) WHERE p.patient_id = m.patient_id`,
      [moved.map((row) => row.patient_id), moved.map(() => pick().site_id), moved.map(() => pick().protocol_id)],
    );
    await service.admin.query(
      `UPDATE patients SET enrollment_date = enrollment_date - (($2::int + abs(hashtext(patient_id::text))) % 90)
        WHERE patient_id = ANY($1::uuid[])`,
      [Array.from({ length: 30 }, () => pick().patient_id), Math.floor(random() * 1_000)],
    );
    // Corrections: some measures change, some disappear, some readings change patient.
    await service.admin.query(
      `UPDATE vital_signs SET systolic_bp = CASE WHEN systolic_bp IS NULL THEN 128 ELSE NULL END, heart_rate = coalesce(heart_rate, 70) + 1
        WHERE vital_id IN (SELECT vital_id FROM vital_signs ORDER BY vital_id OFFSET $1 LIMIT 60)`,
      [Math.floor(random() * 100)],
    );
    await service.admin.query(
      `UPDATE vital_signs SET patient_id = $1
        WHERE vital_id IN (SELECT vital_id FROM vital_signs WHERE patient_id <> $1 ORDER BY vital_id LIMIT 15)`,
      [pick().patient_id],
    );
    // Patients leave with their readings.
    const leaving = Array.from({ length: 10 }, () => pick().patient_id);
    await service.admin.query('DELETE FROM vital_signs WHERE patient_id = ANY($1::uuid[])', [leaving]);
    await service.admin.query('DELETE FROM patients WHERE patient_id = ANY($1::uuid[])', [leaving]);
    await admin.refreshAnalytics({});
    await expectServedFiguresMatch();
  });
});
