import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCircuitBreaker } from './circuitBreaker.js';
import { createCache, type CacheCodec } from './createCache.js';
import { Redis } from 'ioredis';
import { createRedisClient, waitForRedis, type RedisClient } from './createRedisClient.js';
import { startBlackholeServer, testRedisClient } from './testRedis.js';

const textCodec: CacheCodec<string> = {
  encode: (value) => Buffer.from(value),
  decode: (bytes) => Buffer.from(bytes).toString(),
};

let redis: RedisClient;

beforeAll(async () => {
  redis = await testRedisClient();
});
afterAll(() => {
  redis.disconnect();
});

describe('createCache', () => {
  it('makes one load for many concurrent misses, then serves hits without loading', async () => {
    const cache = createCache({ redis, breaker: createCircuitBreaker() });
    let loads = 0;
    const load = async () => {
      loads += 1;
      await new Promise((resolve) => setTimeout(resolve, 50));
      return { value: 'record-v1', version: 1 };
    };
    const results = await Promise.all(Array.from({ length: 25 }, () => cache.getOrLoad('k:concurrent', textCodec, 60, load)));
    expect(results.every((value) => value === 'record-v1')).toBe(true);
    expect(loads).toBe(1);

    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await cache.getOrLoad('k:concurrent', textCodec, 60, load)).toBe('record-v1');
    expect(loads).toBe(1);
    expect(await redis.ttl('k:concurrent')).toBeGreaterThan(50);
  });

  it('never lets an older version replace a newer one', async () => {
    const cache = createCache({ redis, breaker: createCircuitBreaker() });
    await cache.store('k:versions', textCodec, 60, { value: 'v7', version: 7 });
    // A slow reader that loaded version 6 before the write tries to fill the cache.
    await cache.store('k:versions', textCodec, 60, { value: 'v6', version: 6 });
    expect(await cache.getOrLoad('k:versions', textCodec, 60, async () => undefined)).toBe('v7');
    await cache.store('k:versions', textCodec, 60, { value: 'v10', version: 10 });
    expect(await cache.getOrLoad('k:versions', textCodec, 60, async () => undefined)).toBe('v10');
  });

  it('forgets an invalidated key', async () => {
    const cache = createCache({ redis, breaker: createCircuitBreaker() });
    await cache.store('k:gone', textCodec, 60, { value: 'x', version: 1 });
    await cache.invalidate('k:gone');
    expect(await cache.getOrLoad('k:gone', textCodec, 60, async () => ({ value: 'reloaded', version: 2 }))).toBe('reloaded');
  });

  it('falls through to the database when Redis hangs, and stops waiting on it once the breaker opens', async () => {
    const blackhole = await startBlackholeServer();
    // The connection is accepted and looks ready, but no command is ever answered.
    const hung = new Redis(blackhole.url, { enableReadyCheck: false, commandTimeout: 100, maxRetriesPerRequest: 0 });
    hung.on('error', () => {});
    await waitForRedis(hung, 2_000);
    const breaker = createCircuitBreaker({ failureThreshold: 3, resetAfterMs: 60_000 });
    const cache = createCache({ redis: hung, breaker });
    try {
      let loads = 0;
      const load = async () => ({ value: `db-${(loads += 1)}`, version: 1 });
      for (let call = 0; call < 3; call += 1) {
        expect(await cache.getOrLoad('k:hung', textCodec, 60, load)).toMatch(/^db-/);
      }
      expect(breaker.isOpen()).toBe(true);
      const sentBefore = blackhole.bytesReceived();
      for (let call = 0; call < 50; call += 1) {
        expect(await cache.getOrLoad('k:hung', textCodec, 60, load)).toMatch(/^db-/);
      }
      expect(blackhole.bytesReceived()).toBe(sentBefore);
      expect(loads).toBe(53);
    } finally {
      hung.disconnect();
      await blackhole.close();
    }
  });

  it('falls through when Redis is down (connection refused)', async () => {
    const down = createRedisClient({ url: 'redis://127.0.0.1:1' });
    down.on('error', () => {});
    const cache = createCache({ redis: down, breaker: createCircuitBreaker() });
    try {
      expect(await cache.getOrLoad('k:down', textCodec, 60, async () => ({ value: 'from-db', version: 1 }))).toBe('from-db');
      await expect(cache.store('k:down', textCodec, 60, { value: 'x', version: 2 })).resolves.toBeUndefined();
    } finally {
      down.disconnect();
    }
  });
});
