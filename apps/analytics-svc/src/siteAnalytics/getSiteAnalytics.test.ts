import { analyticsV1 } from '@clinical/contracts';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectStatus, startAnalyticsService, type AnalyticsTestService } from '../testing/analyticsTestService.js';
import { insertVitals } from '../testing/trialData.js';
import { analyticsCacheKeys } from './analyticsCache.js';

let service: AnalyticsTestService;
let admin: analyticsV1.AnalyticsServiceClient;
let siteA: analyticsV1.AnalyticsServiceClient;

async function insertPatients(site: string, protocol: string, statuses: string[], enrollmentDate = '2024-01-01'): Promise<string[]> {
  const { rows } = await service.admin.query<{ patient_id: string }>(
    `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, status)
     SELECT 'G-' || gen_random_uuid(), $1, $2, $3::date, s FROM unnest($4::text[]) AS s
     RETURNING patient_id`,
    [site, protocol, enrollmentDate, statuses],
  );
  return rows.map((row) => row.patient_id);
}

beforeAll(async () => {
  service = await startAnalyticsService({ ANALYTICS_REFRESH_SCHEDULER: 'off' });
  admin = service.client(analyticsV1.AnalyticsServiceDefinition, await service.token({ sub: 'admin', roles: ['admin'], sites: '*' }));
  siteA = service.client(
    analyticsV1.AnalyticsServiceDefinition,
    await service.token({ sub: 'coordinator-a', roles: ['coordinator'], sites: ['SITE-A'] }),
  );
  const [first, second] = await insertPatients('SITE-A', 'RA001', ['ENROLLED', 'ENROLLED', 'WITHDRAWN', 'SCREENING']);
  await insertVitals(service.admin, [
    { patient: first!, systolic: 120, diastolic: 80, heart: 60, temperature: '36.6' },
    { patient: first!, systolic: 131, diastolic: null, heart: 71, temperature: null },
    { patient: second!, systolic: null, diastolic: null, heart: null, temperature: null },
  ]);
  await insertPatients('SITE-A', 'NOVITALS', ['COMPLETED']);
  await insertPatients('SITE-B', 'RA001', ['ENROLLED']);
  await admin.refreshAnalytics({});
});

afterAll(async () => {
  await service?.stop();
});

describe('GetSiteAnalytics', () => {
  it('returns the figures of a site and protocol with the as-of time of the refresh', async () => {
    const freshness = await admin.getAnalyticsFreshness({});
    const { siteAnalytics, asOfTime } = await siteA.getSiteAnalytics({ siteId: 'SITE-A', protocolId: 'RA001' });
    expect(asOfTime).toEqual(freshness.asOfTime);
    const { rows } = await service.admin.query("SELECT current_date - date '2024-01-01' AS days");
    expect(siteAnalytics).toEqual({
      siteId: 'SITE-A',
      protocolId: 'RA001',
      patientCount: '4',
      avgDaysEnrolled: rows[0].days,
      totalVitals: '3',
      patientCountsByStatus: [
        { status: 'ENROLLED', patientCount: '2' },
        { status: 'SCREENING', patientCount: '1' },
        { status: 'WITHDRAWN', patientCount: '1' },
      ],
      avgSystolicBp: 125.5,
      avgDiastolicBp: 80,
      avgHeartRate: 65.5,
      avgTemperatureCelsius: 36.6,
    });
  });

  it('leaves the averages unset where no reading carries the measure', async () => {
    const { siteAnalytics } = await siteA.getSiteAnalytics({ siteId: 'SITE-A', protocolId: 'NOVITALS' });
    expect(siteAnalytics).toMatchObject({ patientCount: '1', totalVitals: '0' });
    expect(siteAnalytics?.avgSystolicBp).toBeUndefined();
    expect(siteAnalytics?.avgDiastolicBp).toBeUndefined();
    expect(siteAnalytics?.avgHeartRate).toBeUndefined();
    expect(siteAnalytics?.avgTemperatureCelsius).toBeUndefined();
  });

  it('answers a site outside the caller\'s sites exactly like a pair without data', async () => {
    const hidden = await expectStatus(siteA.getSiteAnalytics({ siteId: 'SITE-B', protocolId: 'RA001' }), Status.NOT_FOUND);
    const missing = await expectStatus(siteA.getSiteAnalytics({ siteId: 'SITE-A', protocolId: 'NONE' }), Status.NOT_FOUND);
    expect(hidden.details.replace('SITE-B/RA001', 'X')).toBe(missing.details.replace('SITE-A/NONE', 'X'));
    await expect(admin.getSiteAnalytics({ siteId: 'SITE-B', protocolId: 'RA001' })).resolves.toMatchObject({
      siteAnalytics: { patientCount: '1' },
    });
  });

  it('serves from a cache keyed by the refresh: a refresh moves readers to new figures at once', async () => {
    const before = await siteA.getSiteAnalytics({ siteId: 'SITE-A', protocolId: 'RA001' });
    const { asOfTime } = await admin.getAnalyticsFreshness({});
    const { rows } = await service.admin.query(
      "SELECT refresh_id FROM analytics_refreshes WHERE status = 'SUCCEEDED' ORDER BY refresh_id DESC LIMIT 1",
    );
    const key = analyticsCacheKeys.site(rows[0].refresh_id, 'SITE-A', 'RA001');
    expect(await service.redis.exists(key)).toBe(1);
    expect(before.asOfTime).toEqual(asOfTime);

    await insertPatients('SITE-A', 'RA001', ['COMPLETED']);
    // Until the view is refreshed, the figures are those of the last refresh.
    expect(await siteA.getSiteAnalytics({ siteId: 'SITE-A', protocolId: 'RA001' })).toEqual(before);
    const refreshed = await admin.refreshAnalytics({});
    const after = await siteA.getSiteAnalytics({ siteId: 'SITE-A', protocolId: 'RA001' });
    expect(after.asOfTime).toEqual(refreshed.asOfTime);
    expect(after.siteAnalytics?.patientCount).toBe('5');
  });

  it('has every pair cached before readers are moved to a new refresh', async () => {
    await admin.refreshAnalytics({});
    const { rows } = await service.admin.query(
      "SELECT refresh_id FROM analytics_refreshes WHERE status = 'SUCCEEDED' ORDER BY refresh_id DESC LIMIT 1",
    );
    const pairs = await service.admin.query<{ site_id: string; protocol_id: string }>('SELECT site_id, protocol_id FROM patient_analytics');
    expect(pairs.rows.length).toBeGreaterThan(2);
    for (const pair of pairs.rows) {
      const key = analyticsCacheKeys.site(rows[0].refresh_id, pair.site_id, pair.protocol_id);
      expect(await service.redis.exists(key), key).toBe(1);
    }
  });

  it('records no access event: aggregates name no patient', async () => {
    await siteA.getSiteAnalytics({ siteId: 'SITE-A', protocolId: 'RA001' });
    await siteA.listSiteAnalytics({});
    await service.running.runtime.accessRecorder.flush();
    const { rows } = await service.admin.query("SELECT count(*)::int AS n FROM audit_events WHERE event_type = 'DATA_ACCESS'");
    expect(rows[0].n).toBe(0);
  });

  it('names each bad field in INVALID_ARGUMENT', async () => {
    const empty = await expectStatus(siteA.getSiteAnalytics({ siteId: '', protocolId: '' }), Status.INVALID_ARGUMENT);
    expect(empty.details).toMatch(/site_id/);
    expect(empty.details).toMatch(/protocol_id/);
    const long = await expectStatus(siteA.getSiteAnalytics({ siteId: 'S'.repeat(51), protocolId: 'P' }), Status.INVALID_ARGUMENT);
    expect(long.details).toMatch(/site_id/);
    const control = await expectStatus(siteA.getSiteAnalytics({ siteId: 'SITE-A', protocolId: 'P\u0000' }), Status.INVALID_ARGUMENT);
    expect(control.details).toMatch(/protocol_id/);
  });

  it('finds ids stored by plain SQL with any printable characters', async () => {
    await insertPatients('Site ü/1:x', 'Prot ocol', ['ENROLLED']);
    await admin.refreshAnalytics({});
    const { siteAnalytics } = await admin.getSiteAnalytics({ siteId: 'Site ü/1:x', protocolId: 'Prot ocol' });
    expect(siteAnalytics?.patientCount).toBe('1');
  });
});
