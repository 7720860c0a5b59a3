import { analyticsV1 } from '@clinical/contracts';
import { ClientError, Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blockRefreshes,
  eventually,
  expectStatus,
  refreshLog,
  startAnalyticsService,
  startReplica,
  type AnalyticsTestService,
  type Replica,
} from './testing/analyticsTestService.js';
import { directFigures, insertRandomTrial } from './testing/trialData.js';

/** Two replicas of analytics-svc on one database and one Redis prefix, as in production. */
let primary: AnalyticsTestService;
let replica: Replica;
let token: string;
let clients: analyticsV1.AnalyticsServiceClient[];

const SITES = ['SITE-1', 'SITE-2', 'SITE-3', 'SITE-4'];
const PROTOCOLS = ['P1', 'P2', 'P3'];

beforeAll(async () => {
  primary = await startAnalyticsService({ ANALYTICS_REFRESH_SCHEDULER: 'off' });
  replica = await startReplica(primary, primary.module);
  token = await primary.token({ sub: 'admin', roles: ['admin'], sites: '*' });
  clients = [primary.client(analyticsV1.AnalyticsServiceDefinition, token), replica.client(analyticsV1.AnalyticsServiceDefinition, token)];
  await insertRandomTrial(primary.admin, { seed: 21, patients: 2_000, sites: SITES, protocols: PROTOCOLS, maxVitalsPerPatient: 30 });
  await clients[0]!.refreshAnalytics({});
});

afterAll(async () => {
  await replica?.stop();
  await primary?.stop();
});

describe('two replicas', () => {
  it('lets one refresh at a time: the other replica is ABORTED and reports the running refresh', async () => {
    const [a, b] = clients as [analyticsV1.AnalyticsServiceClient, analyticsV1.AnalyticsServiceClient];
    const blocker = await blockRefreshes(primary.database.url);
    let pending: Promise<analyticsV1.RefreshAnalyticsResponse>;
    try {
      pending = a.refreshAnalytics({});
      const running = await eventually(async () => {
        const freshness = await b.getAnalyticsFreshness({});
        return freshness.refreshRunning ? freshness : undefined;
      });
      expect(running.runningRefreshStartTime).toBeDefined();
      await expectStatus(b.refreshAnalytics({}), Status.ABORTED);
      await expectStatus(a.refreshAnalytics({}), Status.ABORTED);
      // Reads go on while the refresh waits.
      await expect(b.getSiteAnalytics({ siteId: 'SITE-1', protocolId: 'P1' })).resolves.toBeDefined();
    } finally {
      await blocker.release();
    }
    const done = await pending;
    const seenByOther = await b.getSiteAnalytics({ siteId: 'SITE-1', protocolId: 'P1' });
    expect(seenByOther.asOfTime).toEqual(done.asOfTime);
  });

  it('moves the other replica to a refresh at once: no cached figure outlives it', async () => {
    const [a, b] = clients as [analyticsV1.AnalyticsServiceClient, analyticsV1.AnalyticsServiceClient];
    const before = await b.getSiteAnalytics({ siteId: 'SITE-2', protocolId: 'P2' });
    await primary.admin.query(
      "INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date) VALUES ('TWO-1', 'SITE-2', 'P2', '2024-01-01')",
    );
    expect(await b.getSiteAnalytics({ siteId: 'SITE-2', protocolId: 'P2' })).toEqual(before);
    const refreshed = await a.refreshAnalytics({});
    const after = await b.getSiteAnalytics({ siteId: 'SITE-2', protocolId: 'P2' });
    expect(after.asOfTime).toEqual(refreshed.asOfTime);
    expect(Number(after.siteAnalytics!.patientCount)).toBe(Number(before.siteAnalytics!.patientCount) + 1);
  });

  it('serves hammered reads on both replicas without an error while refreshes and writes go on', async () => {
    const readErrors: string[] = [];
    const seen = new Map<number, Map<string, string>>();
    let refreshes = 0;
    let aborted = 0;
    const refreshedOn = new Set<number>();
    let stop = false;

    const record = (asOf: Date | undefined, rows: analyticsV1.SiteAnalytics[]) => {
      const key = asOf!.getTime();
      const figures = seen.get(key) ?? new Map<string, string>();
      seen.set(key, figures);
      for (const row of rows) {
        const id = `${row.siteId}/${row.protocolId}`;
        const value = JSON.stringify(row);
        // One as-of time, one set of figures: whichever replica, cache or database served it.
        expect(figures.get(id) ?? value, id).toBe(value);
        figures.set(id, value);
      }
    };
    const reader = async (client: analyticsV1.AnalyticsServiceClient, index: number) => {
      let lastAsOf = 0;
      let call = index;
      while (!stop) {
        call += 1;
        try {
          const site = SITES[call % SITES.length]!;
          const protocol = PROTOCOLS[call % PROTOCOLS.length]!;
          const response =
            call % 3 === 0
              ? await client.listSiteAnalytics({ pageSize: 5 })
              : await client.getSiteAnalytics({ siteId: site, protocolId: protocol }).then((got) => ({
                  asOfTime: got.asOfTime,
                  siteAnalytics: got.siteAnalytics ? [got.siteAnalytics] : [],
                }));
          record(response.asOfTime, response.siteAnalytics);
          // A reader never goes back in time, even when its calls alternate between replicas.
          expect(response.asOfTime!.getTime()).toBeGreaterThanOrEqual(lastAsOf);
          lastAsOf = response.asOfTime!.getTime();
        } catch (error) {
          readErrors.push(error instanceof ClientError ? `${Status[error.code]} ${error.details}` : String(error));
        }
      }
    };
    const refresher = async () => {
      let turn = 0;
      while (!stop) {
        turn += 1;
        await primary.admin.query(
          `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date)
           VALUES ('H-' || gen_random_uuid(), $1, $2, '2024-03-01')`,
          [SITES[turn % SITES.length], PROTOCOLS[turn % PROTOCOLS.length]],
        );
        try {
          await clients[turn % 2]!.refreshAnalytics({});
          refreshes += 1;
          refreshedOn.add(turn % 2);
        } catch (error) {
          if (error instanceof ClientError && error.code === Status.ABORTED) {
            aborted += 1;
          } else {
            throw error;
          }
        }
      }
    };

    // Readers alternate replicas inside the same loop too: half the readers use each.
    const alternating: analyticsV1.AnalyticsServiceClient = {
      getSiteAnalytics: (request, options) => clients[Math.floor(Math.random() * 2)]!.getSiteAnalytics(request, options),
      listSiteAnalytics: (request, options) => clients[Math.floor(Math.random() * 2)]!.listSiteAnalytics(request, options),
      refreshAnalytics: (request, options) => clients[0]!.refreshAnalytics(request, options),
      getAnalyticsFreshness: (request, options) => clients[0]!.getAnalyticsFreshness(request, options),
    };
    const work = [
      ...Array.from({ length: 4 }, (_, index) => reader(clients[index % 2]!, index)),
      ...Array.from({ length: 2 }, (_, index) => reader(alternating, 10 + index)),
      refresher(),
      refresher(),
    ];
    // Until each replica has refreshed a few times and refreshes have met each other: however long a busy machine takes.
    await eventually(
      async () => (refreshes > 3 && aborted > 0 && refreshedOn.size === 2 && seen.size > 2 ? true : undefined),
      120_000,
      'refreshes on both replicas under reads',
    ).finally(() => {
      stop = true;
    });
    await Promise.all(work);

    expect(readErrors).toEqual([]);
    expect(refreshes).toBeGreaterThan(3);
    // Two refreshers on two replicas: some of their calls met a running refresh.
    expect(refreshes + aborted).toBeGreaterThan(refreshes);
    expect(seen.size).toBeGreaterThan(2);

    // Refreshes never overlapped, whichever replica ran them.
    const log = (await refreshLog(primary.admin)).filter((row) => row.status === 'SUCCEEDED');
    for (let index = 1; index < log.length; index += 1) {
      expect(log[index]!.started_at.getTime()).toBeGreaterThanOrEqual(log[index - 1]!.finished_at.getTime());
    }
    expect(new Set(log.map((row) => row.replica)).size).toBe(2);

    // And after a last refresh (the last writes may have met only ABORTED refreshes), the figures are the tables'.
    await clients[0]!.refreshAnalytics({});
    const final = await clients[1]!.listSiteAnalytics({ pageSize: 1_000 });
    const direct = await directFigures(primary.admin, final.asOfTime!.toISOString().slice(0, 10));
    expect(final.siteAnalytics.map((row) => [row.siteId, row.protocolId, Number(row.patientCount), Number(row.totalVitals)])).toEqual(
      direct.map((row) => [row.site_id, row.protocol_id, row.patient_count, row.total_vitals]),
    );
  });

  it('runs each scheduled refresh on one replica only', async () => {
    const scheduledPrimary = await startAnalyticsService({ ANALYTICS_REFRESH_INTERVAL_SECONDS: '1' });
    const scheduledReplica = await startReplica(scheduledPrimary, scheduledPrimary.module);
    try {
      await insertRandomTrial(scheduledPrimary.admin, { seed: 22, patients: 300, sites: SITES, protocols: PROTOCOLS, maxVitalsPerPatient: 10 });
      const log = await eventually(async () => {
        const rows = (await refreshLog(scheduledPrimary.admin)).filter((row) => row.status === 'SUCCEEDED');
        return rows.length >= 4 ? rows : undefined;
      });
      for (let index = 1; index < log.length; index += 1) {
        // Due once per interval from the shared log: never one per replica.
        expect(log[index]!.started_at.getTime() - log[index - 1]!.started_at.getTime()).toBeGreaterThanOrEqual(990);
      }
    } finally {
      await scheduledReplica.stop();
      await scheduledPrimary.stop();
    }
  });
});
