import type { analyticsV1 } from '@clinical/contracts';
import type pg from 'pg';
import { expect } from 'vitest';
import { directFigures, type DirectFigures } from './trialData.js';

/** Every pair the service serves, through ListSiteAnalytics pages, with their one as-of time. */
async function listEverything(client: analyticsV1.AnalyticsServiceClient): Promise<{ rows: analyticsV1.SiteAnalytics[]; asOf: Date }> {
  const rows: analyticsV1.SiteAnalytics[] = [];
  let pageToken = '';
  let asOf: Date | undefined;
  do {
    const page = await client.listSiteAnalytics({ pageSize: 37, pageToken });
    asOf ??= page.asOfTime;
    expect(page.asOfTime).toEqual(asOf);
    rows.push(...page.siteAnalytics);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return { rows, asOf: asOf! };
}

/** Means are rounded to two decimals where they are served: they agree with the unrounded ones within 0.005. */
function expectClose(actual: number | string | null | undefined, expected: number | null, label: string): void {
  if (expected === null) {
    expect(actual ?? undefined, label).toBeUndefined();
  } else {
    expect(actual, label).toBeDefined();
    expect(actual, label).not.toBeNull();
    expect(Math.abs(Number(actual) - expected), `${label}: ${actual} vs ${expected}`).toBeLessThanOrEqual(0.005 + 1e-9);
  }
}

/**
 * Every figure the service serves (all pages, an admin's client), and every
 * row of patient_analytics, against the same aggregates computed straight
 * from the tables (trialData's directFigures, formulated independently).
 * `label` goes into each assertion's message (a test's seed, say).
 */
export async function expectServedFiguresMatchTables(
  client: analyticsV1.AnalyticsServiceClient,
  admin: pg.Client,
  label = '',
): Promise<void> {
  const { rows, asOf } = await listEverything(client);
  const direct = await directFigures(admin, asOf.toISOString().slice(0, 10));
  expect(rows.map((row) => [row.siteId, row.protocolId]), label).toEqual(direct.map((row) => [row.site_id, row.protocol_id]));
  direct.forEach((expected: DirectFigures, index) => {
    const served = rows[index]!;
    const pair = `${label} ${expected.site_id}/${expected.protocol_id}`;
    expect(Number(served.patientCount), pair).toBe(expected.patient_count);
    expect(Number(served.totalVitals), pair).toBe(expected.total_vitals);
    expect(
      Object.fromEntries(served.patientCountsByStatus.map((count) => [count.status, Number(count.patientCount)])),
      pair,
    ).toEqual(expected.by_status);
    expect(served.patientCountsByStatus.map((count) => count.status), pair).toEqual(
      [...served.patientCountsByStatus.map((count) => count.status)].sort(),
    );
    expectClose(served.avgDaysEnrolled, expected.avg_days_enrolled, `${pair} avg_days_enrolled`);
    expectClose(served.avgSystolicBp, expected.avg_systolic_bp, `${pair} avg_systolic_bp`);
    expectClose(served.avgDiastolicBp, expected.avg_diastolic_bp, `${pair} avg_diastolic_bp`);
    expectClose(served.avgHeartRate, expected.avg_heart_rate, `${pair} avg_heart_rate`);
    expectClose(served.avgTemperatureCelsius, expected.avg_temperature, `${pair} avg_temperature`);
  });
  // patient_analytics itself (the old system's view), row for row, against the same direct figures.
  const view = await admin.query<{
    site_id: string;
    protocol_id: string;
    patient_count: number;
    total_vitals: number;
    avg_days_enrolled: string;
    avg_systolic_bp: string | null;
    avg_diastolic_bp: string | null;
    avg_heart_rate: string | null;
    avg_temperature: string | null;
  }>(
    `SELECT site_id, protocol_id, patient_count::int, total_vitals::int, avg_days_enrolled, avg_systolic_bp, avg_diastolic_bp,
            avg_heart_rate, avg_temperature
       FROM patient_analytics ORDER BY 1, 2`,
  );
  expect(
    view.rows.map(({ site_id, protocol_id, patient_count, total_vitals }) => ({ site_id, protocol_id, patient_count, total_vitals })),
    label,
  ).toEqual(direct.map(({ site_id, protocol_id, patient_count, total_vitals }) => ({ site_id, protocol_id, patient_count, total_vitals })));
  view.rows.forEach((row, index) => {
    const expected = direct[index]!;
    const pair = `${label} patient_analytics ${row.site_id}/${row.protocol_id}`;
    expectClose(row.avg_days_enrolled, expected.avg_days_enrolled, `${pair} avg_days_enrolled`);
    expectClose(row.avg_systolic_bp, expected.avg_systolic_bp, `${pair} avg_systolic_bp`);
    expectClose(row.avg_diastolic_bp, expected.avg_diastolic_bp, `${pair} avg_diastolic_bp`);
    expectClose(row.avg_heart_rate, expected.avg_heart_rate, `${pair} avg_heart_rate`);
    expectClose(row.avg_temperature, expected.avg_temperature, `${pair} avg_temperature`);
  });
}
