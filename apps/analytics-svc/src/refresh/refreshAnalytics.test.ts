import { randomUUID } from 'node:crypto';
import { analyticsV1 } from '@clinical/contracts';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectStatus, startAnalyticsService, type AnalyticsTestService } from '../testing/analyticsTestService.js';
import { insertRandomTrial } from '../testing/trialData.js';

let service: AnalyticsTestService;
let admin: analyticsV1.AnalyticsServiceClient;
let monitor: analyticsV1.AnalyticsServiceClient;

const millis = (duration: { seconds: string; nanos: number } | undefined) =>
  duration ? Number(duration.seconds) * 1_000 + duration.nanos / 1e6 : Number.NaN;

beforeAll(async () => {
  // No schedule here: every refresh in this file is requested.
  service = await startAnalyticsService({ ANALYTICS_REFRESH_SCHEDULER: 'off' });
  admin = service.client(analyticsV1.AnalyticsServiceDefinition, await service.token({ sub: 'admin-1', roles: ['admin'], sites: '*' }));
  monitor = service.client(
    analyticsV1.AnalyticsServiceDefinition,
    await service.token({ sub: 'monitor-1', roles: ['monitor'], sites: ['SITE-A'] }),
  );
});

afterAll(async () => {
  await service?.stop();
});

describe('RefreshAnalytics', () => {
  it('refreshes, reports duration, row count and the new as-of time, and logs the refresh', async () => {
    await insertRandomTrial(service.admin, { seed: 11, patients: 40, sites: ['SITE-A', 'SITE-B'], protocols: ['P1', 'P2'], maxVitalsPerPatient: 4 });
    const before = await admin.getAnalyticsFreshness({});
    const startedAt = Date.now();
    const response = await admin.refreshAnalytics({});
    expect(response.asOfTime!.getTime()).toBeGreaterThan(before.asOfTime!.getTime());
    // The as-of time is when the refresh began: within the call (the database shares this machine's clock).
    expect(response.asOfTime!.getTime()).toBeGreaterThanOrEqual(startedAt - 1_000);
    expect(response.asOfTime!.getTime()).toBeLessThanOrEqual(Date.now() + 1_000);
    expect(millis(response.duration)).toBeGreaterThanOrEqual(0);
    expect(millis(response.duration)).toBeLessThan(Date.now() - startedAt + 50);
    const { rows } = await service.admin.query('SELECT count(*)::int AS n FROM patient_analytics');
    expect(Number(response.rowCount)).toBe(rows[0].n);

    const after = await monitor.getAnalyticsFreshness({});
    expect(after.asOfTime).toEqual(response.asOfTime);
    expect(millis(after.lastRefreshDuration)).toBeCloseTo(millis(response.duration), 3);
    expect(after.refreshRunning).toBe(false);
    expect(after.consecutiveFailureCount).toBe(0);
    expect(millis(after.refreshInterval)).toBe(3_600_000);
    expect(after.nextRefreshTime!.getTime()).toBe(response.asOfTime!.getTime() + 3_600_000);

    const log = await service.admin.query(
      `SELECT status, trigger, requested_by, trace_id, replica FROM analytics_refreshes ORDER BY refresh_id DESC LIMIT 1`,
    );
    expect(log.rows[0]).toMatchObject({ status: 'SUCCEEDED', trigger: 'REQUESTED', requested_by: 'admin-1' });
    expect(log.rows[0].trace_id).toMatch(/^[0-9a-f]{32}$/);
  });

  it('is for admins only', async () => {
    await expectStatus(monitor.refreshAnalytics({}), Status.PERMISSION_DENIED);
  });

  it('returns the first result to a retry with the same request_id, and refuses a malformed one', async () => {
    const requestId = randomUUID();
    const first = await admin.refreshAnalytics({ requestId });
    const retry = await admin.refreshAnalytics({ requestId });
    expect(retry).toEqual(first);
    const { rows } = await service.admin.query('SELECT count(*)::int AS n FROM analytics_refreshes WHERE request_id = $1', [requestId]);
    expect(rows[0].n).toBe(1);
    const bad = await expectStatus(admin.refreshAnalytics({ requestId: 'not-a-uuid' }), Status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/request_id/);
  });
});
