import { randomUUID } from 'node:crypto';
import { createCircuitBreaker, createNearCache, createRedisClient, waitForRedis, type RedisClient } from '@clinical/cache';
import { createDatabasePool, sql, type DatabasePool } from '@clinical/db';
import { createTestDatabase, eventually, testRedisTarget, testServices, uniqueKeyPrefix, type TestDatabase } from '@clinical/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createSessionStore, openSession, type SessionStore } from './sessions.js';

let database: TestDatabase;
let owner: DatabasePool;
let service: DatabasePool;
let redis: RedisClient;
let store: SessionStore;
const IDLE_SECONDS = 600;

/** A session opened now, for an hour. */
async function opened(): Promise<string> {
  const sid = randomUUID();
  await openSession(owner, { sid, sub: 'alice', expiresAt: new Date(Date.now() + 3_600_000) });
  return sid;
}

async function revokeInDatabase(sid: string): Promise<void> {
  await owner.query(sql.unsafe`UPDATE sessions SET revoked_at = now(), revoked_by = 'admin' WHERE sid = ${sid}`);
}

beforeAll(async () => {
  const { postgresUrl, templateDatabase } = testServices();
  database = await createTestDatabase(postgresUrl, templateDatabase);
  owner = await createDatabasePool({ connectionUri: database.url });
  service = await createDatabasePool({ connectionUri: database.urlAs('clinical_patient_svc') });
  redis = createRedisClient({ ...testRedisTarget(), keyPrefix: uniqueKeyPrefix() });
  await waitForRedis(redis, 5_000);
  store = createSessionStore({ pool: service, redis, breaker: createCircuitBreaker(), idleTimeoutSeconds: IDLE_SECONDS });
});

afterAll(async () => {
  redis?.disconnect();
  await service?.end();
  await owner?.end();
  await database?.drop();
});

describe('sessions: PostgreSQL the source of truth, Redis the cache', () => {
  it('accepts a live session, checking as a service role may, and caches the answer', async () => {
    const sid = await opened();
    expect(await store.isActive(sid)).toBe(true);
    expect(await redis.get(`session:${sid}`)).toBe('live');
    expect(await store.isActive(randomUUID())).toBe(false);
  });

  it('refuses a revoked session on the very next check', async () => {
    const sid = await opened();
    expect(await store.isActive(sid)).toBe(true);
    await revokeInDatabase(sid);
    await store.forget([sid]);
    expect(await store.isActive(sid)).toBe(false);
  });

  it('refuses a session another replica revoked on its next check, replicas answering from their near caches (none over a cluster)', async () => {
    const replica = () => {
      const nearCache = createNearCache({ redis, maxAgeMs: 3_600_000 });
      return { nearCache, store: createSessionStore({ pool: service, redis, nearCache, breaker: createCircuitBreaker(), idleTimeoutSeconds: IDLE_SECONDS }) };
    };
    const [checking, revoking] = [replica(), replica()];
    // Near caches are made over a single Redis server only: a cluster's nodes would each have to track every key.
    expect(checking.nearCache === undefined).toBe(testServices().redisClusterNodes !== undefined);
    try {
      await eventually(async () => (checking.nearCache?.isTracking() ?? true) && (revoking.nearCache?.isTracking() ?? true) || undefined, 5_000, 'tracking');
      const sid = await opened();
      expect(await checking.store.isActive(sid)).toBe(true);
      if (checking.nearCache) {
        const nearCache = checking.nearCache;
        await eventually(async () => (await checking.store.isActive(sid)) && nearCache.peek(`session:${sid}`) !== undefined || undefined, 5_000, 'a copy held');
      }
      await revokeInDatabase(sid);
      await revoking.store.forget([sid]);
      // Redis queued the invalidation before it answered the revocation's write: the very next check refuses.
      expect(await checking.store.isActive(sid)).toBe(false);
      expect(await revoking.store.isActive(sid)).toBe(false);
    } finally {
      checking.nearCache?.close();
      revoking.nearCache?.close();
    }
  });

  it('logs nobody out when Redis loses its data, and still refuses what was revoked', async () => {
    const live = await opened();
    const revoked = await opened();
    expect(await store.isActive(live)).toBe(true);
    await revokeInDatabase(revoked);
    // One key per DEL: on a cluster the two may live on different nodes.
    await Promise.all([redis.del(`session:${live}`), redis.del(`session:${revoked}`)]);
    expect(await store.isActive(live)).toBe(true);
    expect(await store.isActive(revoked)).toBe(false);
  });

  it('answers from PostgreSQL alone while Redis is away', async () => {
    const down = createRedisClient({ url: 'redis://127.0.0.1:1', commandTimeoutMs: 50 });
    down.on('error', () => {});
    const withoutRedis = createSessionStore({ pool: service, redis: down, breaker: createCircuitBreaker(), idleTimeoutSeconds: IDLE_SECONDS });
    try {
      const live = await opened();
      const revoked = await opened();
      await revokeInDatabase(revoked);
      expect(await withoutRedis.isActive(live)).toBe(true);
      expect(await withoutRedis.isActive(revoked)).toBe(false);
    } finally {
      down.disconnect();
    }
  });

  it('ends a session past its absolute end or idle past the timeout', async () => {
    const ended = await opened();
    await owner.query(sql.unsafe`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE sid = ${ended}`);
    const idle = await opened();
    await owner.query(sql.unsafe`UPDATE sessions SET last_seen_at = now() - make_interval(secs => ${IDLE_SECONDS + 1}) WHERE sid = ${idle}`);
    expect(await store.isActive(ended)).toBe(false);
    expect(await store.isActive(idle)).toBe(false);
  });

  it('writes a session’s use back to PostgreSQL, so that a cache refill knows it was recently used', async () => {
    const sid = await opened();
    await owner.query(sql.unsafe`UPDATE sessions SET last_seen_at = now() - interval '5 minutes' WHERE sid = ${sid}`);
    expect(await store.isActive(sid)).toBe(true);
    const lastSeenAgo = async () =>
      owner.oneFirst(sql.type(z.object({ ago: z.number() }))`SELECT extract(epoch FROM now() - last_seen_at)::float8 AS ago FROM sessions WHERE sid = ${sid}`);
    await eventually(async () => ((await lastSeenAgo()) < 60 ? true : undefined), 30_000, 'the write-back');
  });

  it('keeps a revocation’s mark in the cache against an older answer refilling it', async () => {
    const sid = await opened();
    await store.forget([sid]);
    // The database still says live (this revocation's write is the test's to make), yet the mark rules.
    expect(await store.isActive(sid)).toBe(false);
    await redis.del(`session:${sid}`);
    expect(await store.isActive(sid)).toBe(true);
  });

  it('audits the opening of a session and its revocation', async () => {
    const sid = await opened();
    await revokeInDatabase(sid);
    const actions = await owner.anyFirst(
      sql.type(z.object({ action: z.string() }))`SELECT action FROM audit_events WHERE entity_type = 'session' AND entity_key = ${sid} ORDER BY event_seq`,
    );
    expect(actions).toEqual(['INSERT', 'UPDATE']);
  });
});
