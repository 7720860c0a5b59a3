import { analyticsV1 } from '@clinical/contracts';
import { seededRandom } from '@clinical/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAnalyticsService, startReplica, type AnalyticsTestService } from './testing/analyticsTestService.js';
import { directFigures, insertRandomTrial, insertVitals, STATUSES, type DirectFigures } from './testing/trialData.js';

/**
 * After each refresh, every figure the service returns is compared with the
 * same aggregate computed straight from the tables, on random trials. The
 * view rounds means to two decimals, so they must agree within 0.005.
 */
let service: AnalyticsTestService;
let admin: analyticsV1.AnalyticsServiceClient;

const SEED = Number(process.env.ANALYTICS_TEST_SEED ?? Date.now() % 1_000_000);

async function listEverything(): Promise<{ rows: analyticsV1.SiteAnalytics[]; asOf: Date }> {
  const rows: analyticsV1.SiteAnalytics[] = [];
  let pageToken = '';
  let asOf: Date | undefined;
  do {
    const page = await admin.listSiteAnalytics({ pageSize: 37, pageToken });
    asOf ??= page.asOfTime;
    expect(page.asOfTime).toEqual(asOf);
    rows.push(...page.siteAnalytics);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return { rows, asOf: asOf! };
}

function expectClose(actual: number | undefined, expected: number | null, label: string): void {
  if (expected === null) {
    expect(actual, label).toBeUndefined();
  } else {
    expect(actual, label).toBeDefined();
    expect(Math.abs(actual! - expected), `${label}: ${actual} vs ${expected}`).toBeLessThanOrEqual(0.005 + 1e-9);
  }
}

async function expectServedFiguresMatchTables(): Promise<void> {
  const { rows, asOf } = await listEverything();
  const direct = await directFigures(service.admin, asOf.toISOString().slice(0, 10));
  expect(rows.map((row) => [row.siteId, row.protocolId])).toEqual(direct.map((row) => [row.site_id, row.protocol_id]));
  direct.forEach((expected: DirectFigures, index) => {
    const served = rows[index]!;
    const label = `seed ${SEED}, ${expected.site_id}/${expected.protocol_id}`;
    expect(Number(served.patientCount), label).toBe(expected.patient_count);
    expect(Number(served.totalVitals), label).toBe(expected.total_vitals);
    expect(
      Object.fromEntries(served.patientCountsByStatus.map((count) => [count.status, Number(count.patientCount)])),
      label,
    ).toEqual(expected.by_status);
    expect(served.patientCountsByStatus.map((count) => count.status), label).toEqual(
      [...served.patientCountsByStatus.map((count) => count.status)].sort(),
    );
    expectClose(served.avgDaysEnrolled, expected.avg_days_enrolled, `${label} avg_days_enrolled`);
    expectClose(served.avgSystolicBp, expected.avg_systolic_bp, `${label} avg_systolic_bp`);
    expectClose(served.avgDiastolicBp, expected.avg_diastolic_bp, `${label} avg_diastolic_bp`);
    expectClose(served.avgHeartRate, expected.avg_heart_rate, `${label} avg_heart_rate`);
    expectClose(served.avgTemperatureCelsius, expected.avg_temperature, `${label} avg_temperature`);
  });
  // The view itself, row for row, against the same direct figures.
  const view = await service.admin.query('SELECT site_id, protocol_id, patient_count::int, total_vitals::int FROM patient_analytics ORDER BY 1, 2');
  expect(view.rows).toEqual(direct.map(({ site_id, protocol_id, patient_count, total_vitals }) => ({ site_id, protocol_id, patient_count, total_vitals })));
}

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
    await expectServedFiguresMatchTables();
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
    await expectServedFiguresMatchTables();
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
      await expectServedFiguresMatchTables();
    } finally {
      await replica.stop();
      await service.admin.query(`ALTER DATABASE "${service.database.name}" RESET timezone`);
    }
  });

  it('matches with patients that have no readings and readings that carry no measure', async () => {
    await insertRandomTrial(service.admin, { seed: SEED + 3, patients: 25, sites: ['EMPTY-SITE'], protocols: ['NONE'], maxVitalsPerPatient: 0 });
    await insertRandomTrial(service.admin, { seed: SEED + 4, patients: 25, sites: ['NULL-SITE'], protocols: ['NULLS'], maxVitalsPerPatient: 4, nullChance: 1 });
    await admin.refreshAnalytics({});
    await expectServedFiguresMatchTables();
  });
});
