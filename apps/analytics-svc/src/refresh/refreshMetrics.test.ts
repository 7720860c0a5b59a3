import { analyticsV1 } from '@clinical/contracts';
import { samplesOf, startTestMetrics, type TestMetrics } from '@clinical/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAnalyticsService, type AnalyticsTestService } from '../testing/analyticsTestService.js';

let metrics: TestMetrics;
let service: AnalyticsTestService;
let admin: analyticsV1.AnalyticsServiceClient;

beforeAll(async () => {
  // Before the service: its instruments are made when it starts.
  metrics = await startTestMetrics();
  service = await startAnalyticsService({ ANALYTICS_REFRESH_SCHEDULER: 'off' });
  admin = service.client(analyticsV1.AnalyticsServiceDefinition, await service.token({ roles: ['admin'], sites: '*' }));
  await service.admin.query(
    "INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date) VALUES ('C-' || gen_random_uuid(), 'SITE-X', 'P', '2024-01-01')",
  );
});

afterAll(async () => {
  await service?.stop();
  await metrics?.stop();
});

describe('analytics metrics', () => {
  it('times each refresh by trigger and outcome, and shows the age of the figures served', async () => {
    const before = Date.now();
    const refreshed = await admin.refreshAnalytics({});
    const { samples } = await metrics.scrape();
    const scrapedAt = Date.now();

    const success = { trigger: 'REQUESTED', outcome: 'success' };
    expect(samplesOf(samples, 'clinical_analytics_refresh_duration_count', success)).toEqual([expect.objectContaining({ value: 1 })]);
    const [sum] = samplesOf(samples, 'clinical_analytics_refresh_duration_sum', success);
    // The refresh's wall time, within the call's.
    expect(sum!.value).toBeGreaterThan(0);
    expect(sum!.value).toBeLessThanOrEqual((scrapedAt - before) / 1_000);

    // Seconds since the as-of time of the refresh just made (the database's clock is this machine's).
    const [age] = samplesOf(samples, 'clinical_analytics_view_age');
    expect(age!.value).toBeGreaterThanOrEqual(0);
    expect(age!.value).toBeLessThanOrEqual((scrapedAt - refreshed.asOfTime!.getTime()) / 1_000 + 1);
  });

  it('counts the analytics cache lookups: a site the refresh warmed is a hit, a first page a miss', async () => {
    const monitor = service.client(analyticsV1.AnalyticsServiceDefinition, await service.token({ roles: ['monitor'], sites: '*' }));
    expect((await monitor.getSiteAnalytics({ siteId: 'SITE-X', protocolId: 'P' })).siteAnalytics?.patientCount).toBe('1');
    await monitor.listSiteAnalytics({});
    const { samples } = await metrics.scrape();
    expect(samplesOf(samples, 'clinical_cache_lookups_total', { cache_name: 'analytics', cache_result: 'hit' })).toEqual([
      expect.objectContaining({ value: 1 }),
    ]);
    expect(samplesOf(samples, 'clinical_cache_lookups_total', { cache_name: 'analytics', cache_result: 'miss' })).toEqual([
      expect.objectContaining({ value: 1 }),
    ]);
  });
});
