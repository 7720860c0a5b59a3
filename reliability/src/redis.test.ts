import { auditV1, sessionV1 } from '@clinical/contracts';
import { createChannel, createClient, Metadata, Status } from 'nice-grpc';
import { eventually } from '@clinical/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDatabase } from './harness/checks.js';
import { codeOf, startMixedLoad } from './harness/load.js';
import { scrapeMetrics, sumOf } from './harness/metrics.js';
import { report, summarizeCalls } from './harness/report.js';
import { startReliabilityStack, type ReliabilityStack } from './harness/stack.js';

/**
 * Redis is a cache and a place for shared counters, never the truth: losing
 * it under load fails no call, and getting it back (with its old data, or
 * with none) serves nothing stale and logs nobody out.
 */
let stack: ReliabilityStack;

beforeAll(async () => {
  // Persistent, as a production Redis is: a restart brings back every entry it held, old ones included.
  stack = await startReliabilityStack({ redis: { persistent: true } });
});

afterAll(async () => {
  await stack?.remove();
});

const cacheHits = async () => sumOf(await scrapeMetrics(stack.services['patient-svc']), 'clinical_cache_lookups_total', { cache_result: 'hit' });

describe('Redis', () => {
  it('killed (SIGKILL) under load and restarted with its old data: no call fails, nothing stale is served, caching resumes', async () => {
    const load = await startMixedLoad(stack);
    await load.progress(300, 'before the fault');
    const killedAt = Date.now();
    await stack.redis.stop('SIGKILL');
    // Writes while Redis is away cannot invalidate what it held; reads must not be shadowed by it afterwards.
    await load.progress(600, 'while Redis is down');
    await stack.redis.start();
    const restartedAt = Date.now();
    const hitsAtRestart = await cacheHits();
    await load.progress(400, 'after Redis returned');
    // Caching resumes once the keys the outage left stale are repaired and the breaker has closed: on a busy
    // machine that can take longer than 400 operations, so wait for the first hit (the load still running).
    await eventually(async () => ((await cacheHits()) > hitsAtRestart ? true : undefined), 120_000, 'a cache hit after Redis returned');
    const resumedAfterMs = Date.now() - restartedAt;
    const hitsAfter = await cacheHits();
    await load.stop();

    const calls = summarizeCalls(load);
    const database = await checkDatabase(stack, load);
    report('redis killed and restarted', calls, database, {
      downForMs: restartedAt - killedAt,
      cachingResumedAfterMs: resumedAfterMs,
      cacheHitsAfterReturn: hitsAfter - hitsAtRestart,
    });
    expect(calls.failuresByCode).toEqual({});
    expect(database.violations).toEqual([]);
    expect(hitsAfter).toBeGreaterThan(hitsAtRestart);
  });

  it('down while writes commit, and the writing service restarted before Redis returns with its old data: no older entry is served', async () => {
    const load = await startMixedLoad(stack);
    await load.progress(300, 'before the fault');
    await stack.redis.stop('SIGKILL');
    // Updates commit while their cache entries cannot be invalidated; the process that knows it then stops.
    await load.progress(300, 'while Redis is down');
    const patientService = stack.services['patient-svc'];
    const stopped = await patientService.kill('SIGTERM');
    const stoppedAt = Date.now();
    await stack.redis.start();
    await patientService.start();
    await load.progress(400, 'after Redis and patient-svc returned');
    await load.stop();

    const calls = summarizeCalls(load);
    const database = await checkDatabase(stack, load);
    report('redis down across a service restart', calls, database, { patientServiceExit: stopped, restartedMs: Date.now() - stoppedAt });
    expect(stopped).toEqual({ code: 0, signal: null });
    // Calls to patient-svc while it was stopped were refused (and retried); nothing else failed.
    expect(Object.keys(calls.failuresByCode).filter((code) => code !== 'UNAVAILABLE')).toEqual([]);
    expect(database.violations).toEqual([]);
  });

  it('restarted empty under load: no caller is logged out, no call fails, and a revocation still bites on the next call', async () => {
    const load = await startMixedLoad(stack);
    await load.progress(300, 'before the fault');
    await stack.redis.stop('SIGKILL');
    await stack.redis.start({ empty: true });
    const restartedAt = Date.now();
    await load.progress(400, 'after Redis came back empty');
    await load.stop();

    const calls = summarizeCalls(load);
    const database = await checkDatabase(stack, load);
    const revocation = await revokedOnNextCall();
    report('redis restarted empty', calls, database, { restartedAt: new Date(restartedAt).toISOString(), revocation });
    expect(calls.failuresByCode).toEqual({});
    expect(database.violations).toEqual([]);
    // Sessions refilled from PostgreSQL are still ended at once.
    expect(revocation).toEqual({ before: 'OK', after: 'UNAUTHENTICATED' });
  });
});

/** A session used, revoked through SessionService, then used again: what each use got. */
async function revokedOnNextCall(): Promise<{ before: string; after: string }> {
  const token = await stack.token('reliability-leaver', ['auditor']);
  const admin = await stack.token('reliability-security-officer', ['admin']);
  const sid = (JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as { sid: string }).sid;
  const channel = createChannel(stack.services['audit-svc'].address);
  try {
    const trail = createClient(auditV1.AuditServiceDefinition, channel, { '*': { metadata: Metadata({ authorization: `Bearer ${token}` }) } });
    const sessions = createClient(sessionV1.SessionServiceDefinition, channel, { '*': { metadata: Metadata({ authorization: `Bearer ${admin}` }) } });
    const use = () => trail.listAuditEvents({ pageSize: 1 }).then(
      () => 'OK',
      (error: unknown) => Status[codeOf(error)],
    );
    const before = await use();
    // Just after Redis returned, the service may not be reconnected yet: it then ends the session in
    // PostgreSQL and answers UNAVAILABLE (the cache not told), which a client retries, as here.
    await eventually(
      () =>
        sessions.revokeSession({ sessionId: sid, reason: 'left the study team' }).then(
          () => true,
          (error: unknown) => {
            if (codeOf(error) !== Status.UNAVAILABLE) {
              throw error;
            }
            return undefined;
          },
        ),
      60_000,
      'the revocation to be answered',
    );
    return { before, after: await use() };
  } finally {
    channel.close();
  }
}
