import { analyticsV1 } from '@clinical/contracts';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectStatus, startAnalyticsService, type AnalyticsTestService } from '../testing/analyticsTestService.js';

let service: AnalyticsTestService;
let admin: analyticsV1.AnalyticsServiceClient;
let twoSites: analyticsV1.AnalyticsServiceClient;

/** 30 sites x 40 protocols = 1200 pairs: more than the largest page. */
const SITES = Array.from({ length: 30 }, (_, index) => `S${String(index).padStart(2, '0')}`);
const PROTOCOLS = Array.from({ length: 40 }, (_, index) => `P${String(index).padStart(2, '0')}`);

async function listAll(
  client: analyticsV1.AnalyticsServiceClient,
  request: Partial<analyticsV1.ListSiteAnalyticsRequest>,
): Promise<{ pages: analyticsV1.ListSiteAnalyticsResponse[]; rows: analyticsV1.SiteAnalytics[] }> {
  const pages: analyticsV1.ListSiteAnalyticsResponse[] = [];
  let pageToken = '';
  do {
    const page = await client.listSiteAnalytics({ ...request, pageToken });
    pages.push(page);
    pageToken = page.nextPageToken;
  } while (pageToken && pages.length < 100);
  return { pages, rows: pages.flatMap((page) => page.siteAnalytics) };
}

const keyOf = (row: analyticsV1.SiteAnalytics) => `${row.siteId}|${row.protocolId}`;

beforeAll(async () => {
  service = await startAnalyticsService({ ANALYTICS_REFRESH_SCHEDULER: 'off' });
  await service.admin.query(
    `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date)
     SELECT 'L-' || s || '-' || p, s, p, date '2024-06-01' FROM unnest($1::text[]) AS s, unnest($2::text[]) AS p`,
    [SITES, PROTOCOLS],
  );
  admin = service.client(analyticsV1.AnalyticsServiceDefinition, await service.token({ sub: 'admin', roles: ['admin'], sites: '*' }));
  twoSites = service.client(
    analyticsV1.AnalyticsServiceDefinition,
    await service.token({ sub: 'monitor', roles: ['monitor'], sites: ['S07', 'S03'] }),
  );
  await admin.refreshAnalytics({});
});

afterAll(async () => {
  await service?.stop();
});

describe('ListSiteAnalytics', () => {
  it('pages through every pair once, by site then protocol, 100 per page by default', async () => {
    const { pages, rows } = await listAll(admin, {});
    expect(rows).toHaveLength(SITES.length * PROTOCOLS.length);
    expect(pages.map((page) => page.siteAnalytics.length)).toEqual([...Array(12).fill(100)]);
    expect(pages.at(-1)?.nextPageToken).toBe('');
    const keys = rows.map(keyOf);
    expect(keys).toEqual(SITES.flatMap((site) => PROTOCOLS.map((protocol) => `${site}|${protocol}`)));
    const { asOfTime } = await admin.getAnalyticsFreshness({});
    expect(pages.every((page) => page.asOfTime?.getTime() === asOfTime?.getTime())).toBe(true);
  });

  it('caps the page size at 1000 and refuses a negative one, naming page_size', async () => {
    const page = await admin.listSiteAnalytics({ pageSize: 5_000 });
    expect(page.siteAnalytics).toHaveLength(1_000);
    expect(page.nextPageToken).not.toBe('');
    const small = await admin.listSiteAnalytics({ pageSize: 7 });
    expect(small.siteAnalytics).toHaveLength(7);
    const error = await expectStatus(admin.listSiteAnalytics({ pageSize: -1 }), Status.INVALID_ARGUMENT);
    expect(error.details).toMatch(/page_size/);
  });

  it('lets the page size change between pages', async () => {
    const first = await admin.listSiteAnalytics({ pageSize: 3 });
    const second = await admin.listSiteAnalytics({ pageSize: 5, pageToken: first.nextPageToken });
    const direct = await admin.listSiteAnalytics({ pageSize: 8 });
    expect([...first.siteAnalytics, ...second.siteAnalytics]).toEqual(direct.siteAnalytics);
  });

  it('filters by site and by protocol', async () => {
    const { rows: site } = await listAll(admin, { siteId: 'S05', pageSize: 9 });
    expect(site.map(keyOf)).toEqual(PROTOCOLS.map((protocol) => `S05|${protocol}`));
    const { rows: protocol } = await listAll(admin, { protocolId: 'P17', pageSize: 4 });
    expect(protocol.map(keyOf)).toEqual(SITES.map((s) => `${s}|P17`));
    const both = await admin.listSiteAnalytics({ siteId: 'S05', protocolId: 'P17' });
    expect(both.siteAnalytics.map(keyOf)).toEqual(['S05|P17']);
    expect(both.nextPageToken).toBe('');
  });

  it("shows a caller only its own sites; another site's filter gives an empty list", async () => {
    const { rows } = await listAll(twoSites, { pageSize: 15 });
    expect(new Set(rows.map((row) => row.siteId))).toEqual(new Set(['S03', 'S07']));
    expect(rows).toHaveLength(2 * PROTOCOLS.length);
    const other = await twoSites.listSiteAnalytics({ siteId: 'S04' });
    const none = await twoSites.listSiteAnalytics({ siteId: 'NO-SUCH-SITE' });
    expect(other).toEqual(none);
    expect(other.siteAnalytics).toEqual([]);
    expect(other.nextPageToken).toBe('');
    expect(other.asOfTime).toBeDefined();
  });

  it('refuses a forged or altered token, and one reused with other filters, naming page_token', async () => {
    const { nextPageToken } = await admin.listSiteAnalytics({ pageSize: 2, siteId: 'S01' });
    const altered = Buffer.from(nextPageToken, 'base64url');
    altered[altered.length - 1] = (altered[altered.length - 1] ?? 0) ^ 0x01;
    const forged = Buffer.from(JSON.stringify({ c: ['S09', 'P00'], f: 'x' })).toString('base64url');
    for (const pageToken of ['garbage', forged, altered.toString('base64url'), nextPageToken.slice(0, -3), `${nextPageToken}.x`, '\u0000']) {
      const error = await expectStatus(admin.listSiteAnalytics({ pageSize: 2, siteId: 'S01', pageToken }), Status.INVALID_ARGUMENT);
      expect(error.details).toMatch(/page_token/);
    }
    const reused = await expectStatus(admin.listSiteAnalytics({ pageSize: 2, siteId: 'S02', pageToken: nextPageToken }), Status.INVALID_ARGUMENT);
    expect(reused.details).toMatch(/page_token/);
    await expectStatus(admin.listSiteAnalytics({ pageSize: 2, protocolId: 'P01', siteId: 'S01', pageToken: nextPageToken }), Status.INVALID_ARGUMENT);
    await expect(admin.listSiteAnalytics({ pageSize: 2, siteId: 'S01', pageToken: nextPageToken })).resolves.toBeDefined();
  });

  it('continues after a refresh where the last page ended, with the new as-of time', async () => {
    const first = await admin.listSiteAnalytics({ pageSize: 50 });
    await service.admin.query(
      "INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date) VALUES ('L-new', 'S00', 'P00', '2024-06-01')",
    );
    const refreshed = await admin.refreshAnalytics({});
    const second = await admin.listSiteAnalytics({ pageSize: 50, pageToken: first.nextPageToken });
    expect(second.asOfTime).toEqual(refreshed.asOfTime);
    expect(second.siteAnalytics[0]).toMatchObject({ siteId: 'S01', protocolId: 'P10' });
    const again = await admin.listSiteAnalytics({ pageSize: 50 });
    expect(again.siteAnalytics[0]).toMatchObject({ siteId: 'S00', protocolId: 'P00', patientCount: '2' });
  });
});
