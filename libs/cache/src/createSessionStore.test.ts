import { UnavailableError } from '@clinical/errors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCircuitBreaker } from './circuitBreaker.js';
import { createRedisClient, type RedisClient } from './createRedisClient.js';
import { createInProcessSessionStore, createSessionStore } from './createSessionStore.js';
import { testRedisClient } from './testRedis.js';

let redis: RedisClient;

beforeAll(async () => {
  redis = await testRedisClient();
});
afterAll(() => {
  redis.disconnect();
});

const session = (sid: string) => ({ sid, sub: 'alice', createdAt: new Date().toISOString() });

describe('createSessionStore', () => {
  it('keeps a session alive while it is used (sliding TTL)', async () => {
    const sessions = createSessionStore({ redis, breaker: createCircuitBreaker(), ttlSeconds: 100, recheckAfterMs: 0 });
    await sessions.create(session('s-1'));
    await redis.expire('session:s-1', 5);
    expect(await sessions.isActive('s-1')).toBe(true);
    expect(await redis.ttl('session:s-1')).toBeGreaterThan(90);
  });

  it('refuses an unknown, expired or revoked session', async () => {
    const sessions = createSessionStore({ redis, breaker: createCircuitBreaker(), ttlSeconds: 100, recheckAfterMs: 0 });
    expect(await sessions.isActive('never-opened')).toBe(false);
    await sessions.create(session('s-2'));
    await sessions.revoke('s-2');
    expect(await sessions.isActive('s-2')).toBe(false);
  });

  it('sees a revocation made by another replica once the recheck interval passes', async () => {
    let now = 0;
    const replicaA = createSessionStore({ redis, breaker: createCircuitBreaker(), ttlSeconds: 100, recheckAfterMs: 1_000, now: () => now });
    const replicaB = createSessionStore({ redis, breaker: createCircuitBreaker(), ttlSeconds: 100 });
    await replicaB.create(session('s-3'));
    expect(await replicaA.isActive('s-3')).toBe(true);
    await replicaB.revoke('s-3');
    now = 1_001;
    expect(await replicaA.isActive('s-3')).toBe(false);
  });

  it('during a Redis outage, keeps recently confirmed sessions and refuses the rest with UNAVAILABLE', async () => {
    const now = 0;
    const down = createRedisClient({ url: 'redis://127.0.0.1:1' });
    down.on('error', () => {});
    const healthy = createSessionStore({ redis, breaker: createCircuitBreaker(), ttlSeconds: 100 });
    await healthy.create(session('s-4'));
    try {
      const sessions = createSessionStore({
        redis: down,
        breaker: createCircuitBreaker(),
        ttlSeconds: 100,
        recheckAfterMs: 0,
        outageGraceMs: 60_000,
        now: () => now,
      });
      await expect(sessions.isActive('s-4')).rejects.toBeInstanceOf(UnavailableError);
      // Confirmed while Redis was up (same process, earlier)...
      const mixed = createSessionStore({ redis, breaker: createCircuitBreaker(), ttlSeconds: 100, recheckAfterMs: 0, now: () => now });
      expect(await mixed.isActive('s-4')).toBe(true);
    } finally {
      down.disconnect();
    }
  });
});

describe('createInProcessSessionStore', () => {
  it('takes any session as live until it is revoked in this process', async () => {
    const sessions = createInProcessSessionStore();
    expect(await sessions.isActive('opened-elsewhere')).toBe(true);
    await sessions.revoke('opened-elsewhere');
    expect(await sessions.isActive('opened-elsewhere')).toBe(false);
    expect(await sessions.isActive('another')).toBe(true);
  });
});
