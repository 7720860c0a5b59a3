import { analyticsV1 } from '@clinical/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAnalyticsService, type AnalyticsTestService } from '../testing/analyticsTestService.js';
import { createCurrentRefresh, CURRENT_REFRESH_KEY } from './currentRefresh.js';

let service: AnalyticsTestService;
let client: analyticsV1.AnalyticsServiceClient;

async function addPatient(site: string, to: AnalyticsTestService = service): Promise<void> {
  await to.admin.query(
    "INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date) VALUES ('C-' || gen_random_uuid(), $1, 'P', '2024-01-01')",
    [site],
  );
}

beforeAll(async () => {
  service = await startAnalyticsService({ ANALYTICS_REFRESH_SCHEDULER: 'off' });
  client = service.client(analyticsV1.AnalyticsServiceDefinition, await service.token({ roles: ['admin'], sites: '*' }));
  await addPatient('X');
  await addPatient('Y');
});

afterAll(async () => {
  await service?.stop();
});

describe('the current refresh, as readers see it', () => {
  it('is set in Redis by the refresh before RefreshAnalytics answers', async () => {
    const refreshed = await client.refreshAnalytics({});
    const hint = await service.redis.get(CURRENT_REFRESH_KEY);
    expect(hint).toMatch(new RegExp(`\\|${refreshed.asOfTime!.getTime()}$`));
  });

  it('comes from the database when Redis has none, and is set again', async () => {
    await service.redis.del(CURRENT_REFRESH_KEY);
    const { asOfTime } = await client.getSiteAnalytics({ siteId: 'X', protocolId: 'P' });
    expect((await client.getAnalyticsFreshness({})).asOfTime).toEqual(asOfTime);
    expect(await service.redis.get(CURRENT_REFRESH_KEY)).toMatch(new RegExp(`\\|${asOfTime!.getTime()}$`));
  });

  it('heals when a replica died between its commit and the hint: the first load that sees the newer refresh moves everyone', async () => {
    const redis = service.redis;
    const first = await client.refreshAnalytics({});
    const cachedX = await client.getSiteAnalytics({ siteId: 'X', protocolId: 'P' });
    expect(cachedX.asOfTime).toEqual(first.asOfTime);
    const staleHint = await redis.get(CURRENT_REFRESH_KEY);

    await addPatient('X');
    await addPatient('Z');
    const second = await client.refreshAnalytics({});
    await redis.set(CURRENT_REFRESH_KEY, staleHint!);

    // Until then, cached figures of the previous refresh are served, labelled as such.
    expect(await client.getSiteAnalytics({ siteId: 'X', protocolId: 'P' })).toEqual(cachedX);
    // Z has no entry at the previous refresh: its load finds the newer one and serves it.
    const z = await client.getSiteAnalytics({ siteId: 'Z', protocolId: 'P' });
    expect(z.asOfTime).toEqual(second.asOfTime);
    expect(z.siteAnalytics?.patientCount).toBe('1');
    // And readers of X are moved on too.
    const x = await client.getSiteAnalytics({ siteId: 'X', protocolId: 'P' });
    expect(x.asOfTime).toEqual(second.asOfTime);
    expect(x.siteAnalytics?.patientCount).toBe('2');
  });

  it('never moves back when an older refresh is reported late', async () => {
    const redis = service.redis;
    const latest = await client.refreshAnalytics({});
    const current = await redis.get(CURRENT_REFRESH_KEY);
    await createCurrentRefresh(service.running.runtime).advance({ refresh_id: '1', started_at: new Date(0) });
    expect(await redis.get(CURRENT_REFRESH_KEY)).toBe(current);
    expect((await client.getSiteAnalytics({ siteId: 'X', protocolId: 'P' })).asOfTime).toEqual(latest.asOfTime);
  });
});

describe('the current refresh without Redis (STATE_STORE=memory)', () => {
  it('is kept in process and moves with each refresh', async () => {
    const local = await startAnalyticsService({ ANALYTICS_REFRESH_SCHEDULER: 'off', STATE_STORE: 'memory' });
    try {
      const reader = local.client(analyticsV1.AnalyticsServiceDefinition, await local.token({ roles: ['admin'], sites: '*' }));
      await addPatient('X', local);
      const first = await reader.refreshAnalytics({});
      expect(await reader.getSiteAnalytics({ siteId: 'X', protocolId: 'P' })).toMatchObject({
        asOfTime: first.asOfTime,
        siteAnalytics: { patientCount: '1' },
      });

      await addPatient('X', local);
      const second = await reader.refreshAnalytics({});
      expect(await reader.getSiteAnalytics({ siteId: 'X', protocolId: 'P' })).toMatchObject({
        asOfTime: second.asOfTime,
        siteAnalytics: { patientCount: '2' },
      });
    } finally {
      await local.stop();
    }
  });
});
