import { analyticsV1 } from '@clinical/contracts';
import { Status } from 'nice-grpc';
import { afterEach, describe, expect, it } from 'vitest';
import { loadAnalyticsConfig } from '../analyticsConfig.js';
import { createAnalyticsServiceModule } from '../analyticsServiceModule.js';
import {
  blockRefreshes,
  eventually,
  expectStatus,
  lockTable,
  refreshLog,
  startAnalyticsService,
  startReplica,
  type AnalyticsTestService,
} from '../testing/analyticsTestService.js';
import { insertRandomTrial } from '../testing/trialData.js';
import { nextRefreshDue, retryBackoffMs } from './refreshSchedule.js';

const config = { refreshIntervalMs: 3_600_000, retryBaseMs: 1_000, retryMaxMs: 8_000 };

describe('the schedule, computed from the shared log', () => {
  it('doubles the retry wait from the base up to the cap', () => {
    expect([0, 1, 2, 3, 4, 5, 60].map((failures) => retryBackoffMs(config, failures))).toEqual([0, 1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
  });

  it('is due one interval after the last success began, and after failures not before their backoff', () => {
    const started_at = new Date('2026-01-01T10:00:00Z');
    expect(nextRefreshDue({ started_at, failure_count: 0, last_failure_at: null }, config)).toEqual(new Date('2026-01-01T11:00:00Z'));
    const failedAt = new Date('2026-01-01T11:00:05Z');
    expect(nextRefreshDue({ started_at, failure_count: 3, last_failure_at: failedAt }, config)).toEqual(new Date('2026-01-01T11:00:09Z'));
    // A requested refresh that failed early does not pull the schedule forward.
    expect(nextRefreshDue({ started_at, failure_count: 1, last_failure_at: new Date('2026-01-01T10:10:00Z') }, config)).toEqual(
      new Date('2026-01-01T11:00:00Z'),
    );
    expect(nextRefreshDue({ started_at: null, failure_count: 0, last_failure_at: null }, config).getTime()).toBe(0);
  });
});

describe('the refresh schedule, running', () => {
  let service: AnalyticsTestService | undefined;
  afterEach(async () => {
    await service?.stop();
    service = undefined;
  });

  it('refreshes at once when the view is older than the interval, then once per interval', async () => {
    service = await startAnalyticsService({ ANALYTICS_REFRESH_INTERVAL_SECONDS: '1' });
    await insertRandomTrial(service.admin, { seed: 5, patients: 30, sites: ['A', 'B'], protocols: ['P'], maxVitalsPerPatient: 3 });
    const log = await eventually(async () => {
      const rows = (await refreshLog(service!.admin)).filter((row) => row.status === 'SUCCEEDED');
      return rows.length >= 4 ? rows : undefined;
    });
    expect(log.every((row) => row.trigger === 'SCHEDULED')).toBe(true);
    for (let index = 1; index < log.length; index += 1) {
      const gap = log[index]!.started_at.getTime() - log[index - 1]!.started_at.getTime();
      // Never sooner than the interval (how much later depends on the machine; nextRefreshDue's tests pin the due time).
      expect(gap).toBeGreaterThanOrEqual(990);
    }
  });

  it('retries a failing refresh with growing waits, keeps the view readable meanwhile, and recovers', async () => {
    service = await startAnalyticsService({
      ANALYTICS_REFRESH_INTERVAL_SECONDS: '1',
      ANALYTICS_REFRESH_RETRY_BASE_MS: '200',
      ANALYTICS_REFRESH_RETRY_MAX_MS: '800',
    });
    await insertRandomTrial(service.admin, { seed: 6, patients: 30, sites: ['A'], protocols: ['P'], maxVitalsPerPatient: 3 });
    const { rows } = await service.admin.query<{ now: Date }>('SELECT clock_timestamp() AS now');
    const client = service.client(analyticsV1.AnalyticsServiceDefinition, await service.token({ roles: ['monitor'], sites: '*' }));
    await eventually(async () => {
      const log = await refreshLog(service!.admin);
      return log.some((row) => row.status === 'SUCCEEDED' && row.started_at > rows[0]!.now) ? true : undefined;
    });
    // Every refresh consumes the change queue: without the grant to, every attempt fails.
    await service.admin.query('REVOKE DELETE ON analytics_pending_changes FROM clinical_analytics_svc');
    const failing = await eventually(async () => {
      const freshness = await client.getAnalyticsFreshness({});
      return freshness.consecutiveFailureCount >= 4 ? freshness : undefined;
    });
    const readable = await client.getSiteAnalytics({ siteId: 'A', protocolId: 'P' });
    expect(readable.asOfTime).toEqual(failing.asOfTime);
    expect(failing.lastFailureTime).toBeDefined();

    const failures = (await refreshLog(service.admin)).filter((row) => row.status === 'FAILED');
    expect(failures[0]!.error).toMatch(/SQLSTATE 42501/);
    const waits = failures.slice(1, 4).map((row, index) => row.started_at.getTime() - failures[index]!.finished_at.getTime());
    // 200, 400, 800 ms (less what the timers' and the log's clocks differ by).
    expect(waits[0]).toBeGreaterThanOrEqual(150);
    expect(waits[1]).toBeGreaterThanOrEqual(350);
    expect(waits[2]).toBeGreaterThanOrEqual(750);

    await service.admin.query('GRANT DELETE ON analytics_pending_changes TO clinical_analytics_svc');
    const recovered = await eventually(async () => {
      const freshness = await client.getAnalyticsFreshness({});
      return freshness.consecutiveFailureCount === 0 ? freshness : undefined;
    });
    expect(recovered.asOfTime!.getTime()).toBeGreaterThan(failing.asOfTime!.getTime());
    expect(recovered.lastFailureTime).toBeUndefined();
  });

  it('gives up a refresh after its own statement timeout, logged, with the view unchanged and readable', async () => {
    // The pool's statement timeout is out of reach: only the refresh's own (1 s) can end it within the test.
    service = await startAnalyticsService({
      ANALYTICS_REFRESH_SCHEDULER: 'off',
      ANALYTICS_REFRESH_TIMEOUT_SECONDS: '1',
      DATABASE_STATEMENT_TIMEOUT_MS: '600000',
    });
    const admin = service.client(analyticsV1.AnalyticsServiceDefinition, await service.token({ roles: ['admin'], sites: '*' }));
    await insertRandomTrial(service.admin, { seed: 7, patients: 10, sites: ['A'], protocols: ['P'], maxVitalsPerPatient: 2 });
    const before = await admin.refreshAnalytics({});
    const blocker = await blockRefreshes(service.database.url);
    try {
      const startedAt = Date.now();
      const pending = admin.refreshAnalytics({});
      const during = await eventually(async () => {
        const freshness = await admin.getAnalyticsFreshness({});
        return freshness.refreshRunning ? freshness : undefined;
      });
      expect(during.runningRefreshStartTime!.getTime()).toBeGreaterThanOrEqual(startedAt - 1_000);
      await expect(admin.getSiteAnalytics({ siteId: 'A', protocolId: 'P' })).resolves.toMatchObject({ asOfTime: before.asOfTime });
      const error = await expectStatus(pending, Status.UNAVAILABLE);
      expect(error.details).toMatch(/refresh failed/);
      // The refresh's own timeout (1 s here), not the pool's.
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(900);
    } finally {
      await blocker.release();
    }
    const [failure] = (await refreshLog(service.admin)).filter((row) => row.status === 'FAILED');
    expect(failure?.error).toMatch(/SQLSTATE 57014/);
    const after = await admin.getAnalyticsFreshness({});
    expect(after).toMatchObject({ asOfTime: before.asOfTime, consecutiveFailureCount: 1, refreshRunning: false });
    await expect(admin.getSiteAnalytics({ siteId: 'A', protocolId: 'P' })).resolves.toMatchObject({ asOfTime: before.asOfTime });
  });

  it('cancels a running refresh at shutdown without logging it as a failure, and frees the lock', async () => {
    service = await startAnalyticsService({ ANALYTICS_REFRESH_SCHEDULER: 'off', SHUTDOWN_GRACE_MS: '200' });
    const replica = await startReplica(service, service.module);
    const token = await service.token({ roles: ['admin'], sites: '*' });
    const blocker = await blockRefreshes(service.database.url);
    try {
      const pending = replica.client(analyticsV1.AnalyticsServiceDefinition, token).refreshAnalytics({});
      pending.catch(() => {});
      const admin = service.client(analyticsV1.AnalyticsServiceDefinition, token);
      await eventually(async () => ((await admin.getAnalyticsFreshness({})).refreshRunning ? true : undefined));
      // Were the refresh not cancelled, the stop would wait behind the blocked queue until the test timed out.
      await replica.stop();
      expect((await admin.getAnalyticsFreshness({})).refreshRunning).toBe(false);
      expect(await refreshLog(service.admin)).toEqual([]);
    } finally {
      await blocker.release();
    }
  });

  it('starts no refresh once stopping, even from a scheduled tick that reaches the lock after the stop began', async () => {
    service = await startAnalyticsService({ ANALYTICS_REFRESH_SCHEDULER: 'off' });
    const scheduled = createAnalyticsServiceModule(loadAnalyticsConfig({ ANALYTICS_REFRESH_INTERVAL_SECONDS: '1' }));
    // Told once the module's stop has begun: its first steps (the schedule's and the refresher's stop flags) are synchronous.
    let stopBegan!: () => void;
    const stopHasBegun = new Promise<void>((resolve) => {
      stopBegan = resolve;
    });
    const replica = await startReplica(service, {
      ...scheduled,
      async stop(runtime) {
        const stopped = scheduled.stop?.(runtime);
        stopBegan();
        await stopped;
      },
    });
    const admin = service.admin;
    await eventually(async () => ((await refreshLog(admin)).some((row) => row.trigger === 'SCHEDULED') ? true : undefined));
    // A tick stalls reading the refresh log, before it tries the refresh lock; a refresh would wait behind the change queue.
    const logLock = await lockTable(service.database.url, 'analytics_refreshes');
    const refreshLock = await blockRefreshes(service.database.url);
    try {
      await eventually(async () => {
        const { rows } = await admin.query(
          `SELECT count(*)::int AS waiting FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%analytics_refreshes%'`,
        );
        return rows[0].waiting > 0 ? true : undefined;
      });
      const stopped = replica.stop();
      await stopHasBegun;
      await logLock.release();
      // A refresh started now would wait behind the blocked queue, and the stop with it.
      await stopped;
      const { rows } = await admin.query(
        `SELECT count(*)::int AS refreshing FROM pg_stat_activity
          WHERE datname = current_database() AND usename = 'clinical_analytics_svc' AND state = 'active'
            AND query ILIKE '%analytics_pending_changes%'`,
      );
      expect(rows[0].refreshing).toBe(0);
    } finally {
      await logLock.release();
      await refreshLock.release();
    }
  });
});
