import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCircuitBreaker } from './circuitBreaker.js';
import { createCache, StaleKeysOverflowError, type CacheCodec } from './createCache.js';
import { eventually } from '@clinical/testing';
import { Redis } from 'ioredis';
import { createRedisClient, waitForRedis, type RedisClient } from './createRedisClient.js';
import { startBlackholeServer, testRedisClient } from './testRedis.js';

const textCodec: CacheCodec<string> = {
  encode: (value) => Buffer.from(value),
  decode: (bytes) => Buffer.from(bytes).toString(),
};

let redis: RedisClient;

/** A codec that cannot encode some values (as ts-proto throws on an invalid int32). */
const pickyCodec: CacheCodec<string> = {
  encode: (value) => {
    if (value.startsWith('bad')) {
      throw new Error(`invalid int32: ${value}`);
    }
    return textCodec.encode(value);
  },
  decode: textCodec.decode,
};

/** A breaker on a clock the test moves: opened by hand, closed again by moving time. */
function manualBreaker() {
  let now = 0;
  const breaker = createCircuitBreaker({ failureThreshold: 1, resetAfterMs: 1_000, now: () => now });
  return {
    breaker,
    open: () => breaker.recordFailure(),
    /** Lets the next call through as the trial that closes the breaker again. */
    elapse: () => {
      now += 1_000;
    },
  };
}


beforeAll(async () => {
  redis = await testRedisClient();
});
afterAll(() => {
  redis.disconnect();
});

describe('createCache', () => {
  it('makes one load for many concurrent misses, then serves hits without loading', async () => {
    // The load is held until all 25 callers have missed (each is told of its miss just before it joins a load).
    let misses = 0;
    let allMissed: () => void = () => {};
    const missed = new Promise<void>((resolve) => (allMissed = resolve));
    const cache = createCache({
      redis,
      breaker: createCircuitBreaker(),
      onLookup: (_key, hit) => {
        if (!hit && (misses += 1) === 25) {
          allMissed();
        }
      },
    });
    let loads = 0;
    const load = async () => {
      loads += 1;
      await missed;
      return { value: 'record-v1', version: 1 };
    };
    const results = await Promise.all(Array.from({ length: 25 }, () => cache.getOrLoad('k:concurrent', textCodec, 60, load)));
    expect(results.every((value) => value === 'record-v1')).toBe(true);
    expect(loads).toBe(1);

    // The load's value is stored after it is returned.
    await eventually(async () => ((await redis.exists('k:concurrent')) === 1 ? true : undefined));
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

  it('survives a codec that cannot encode: the read falls through, nothing is left unhandled', async () => {
    const errors: unknown[] = [];
    const cache = createCache({ redis, breaker: createCircuitBreaker(), onError: (error) => errors.push(error) });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      let loads = 0;
      const load = async () => ({ value: `bad-${(loads += 1)}`, version: 1 });
      expect(await cache.getOrLoad('k:unencodable', pickyCodec, 60, load)).toBe('bad-1');
      expect(await cache.getOrLoad('k:unencodable', pickyCodec, 60, load)).toBe('bad-2');
      // Both fills failed and were reported; a rejection left unhandled would have been raised by then.
      await eventually(async () => (errors.length >= 2 ? true : undefined));
      expect(unhandled).toEqual([]);
      expect(errors.length).toBeGreaterThanOrEqual(2);
      expect(String(errors[0])).toContain('invalid int32');
      expect(await redis.exists('k:unencodable')).toBe(0);
      await expect(cache.store('k:unencodable', pickyCodec, 60, { value: 'bad', version: 2 })).resolves.toBeUndefined();
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await cache.close();
    }
  });

  it('does not serve the old entry after a write whose store failed (breaker open), and deletes it once Redis answers', async () => {
    const { breaker, open, elapse } = manualBreaker();
    const errors: unknown[] = [];
    const cache = createCache({ redis, breaker, repairIntervalMs: 20, onError: (error) => errors.push(error) });
    try {
      await cache.store('k:stale', textCodec, 60, { value: 'v1', version: 1 });
      expect(await cache.getOrLoad('k:stale', textCodec, 60, async () => undefined)).toBe('v1');

      // The write committed v2, but Redis is refused at the moment it stores it.
      open();
      await cache.store('k:stale', textCodec, 60, { value: 'v2', version: 2 });
      expect(errors.length).toBeGreaterThan(0);

      // Redis answers again: it still holds v1, but reads of the key go to the database and do not fill.
      elapse();
      let loads = 0;
      const load = async () => {
        loads += 1;
        return { value: 'v2', version: 2 };
      };
      expect(await cache.getOrLoad('k:stale', textCodec, 60, load)).toBe('v2');
      expect(loads).toBe(1);

      // The background repair deletes the old entry, then the key is cached again as usual.
      await eventually(async () => ((await redis.exists('k:stale')) === 0 ? true : undefined));
      expect(await cache.getOrLoad('k:stale', textCodec, 60, load)).toBe('v2');
      await eventually(async () => ((await redis.exists('k:stale')) === 1 ? true : undefined));
      expect(await cache.getOrLoad('k:stale', textCodec, 60, load)).toBe('v2');
      expect(loads).toBe(2);
    } finally {
      await cache.close();
    }
  });

  it('leaves a key it could not repair in the journal, where the next process takes it over before serving', async () => {
    const recorded = new Set<string>();
    const journal = {
      read: async () => [...recorded],
      record: async (key: string) => void recorded.add(key),
      forget: async (keys: readonly string[]) => keys.forEach((key) => recorded.delete(key)),
    };
    const { breaker, open } = manualBreaker();
    const first = createCache({ redis, breaker, repairIntervalMs: 20, journal, onError: () => {} });
    await first.store('k:journal', textCodec, 60, { value: 'v1', version: 1 });
    // The write of v2 committed while Redis was refused, and this process stops before Redis answers again.
    open();
    await first.invalidate('k:journal');
    await first.close();
    expect(recorded).toEqual(new Set(['k:journal']));
    expect(await redis.get('k:journal')).toContain('v1');

    // The next process reads the journal before serving: it never returns v1, and deletes it.
    const next = createCache({ redis, breaker: createCircuitBreaker(), repairIntervalMs: 20, journal });
    try {
      await next.restoreStale();
      expect(await next.getOrLoad('k:journal', textCodec, 60, async () => ({ value: 'v2', version: 2 }))).toBe('v2');
      await eventually(async () => (recorded.size === 0 && (await redis.exists('k:journal')) === 0 ? true : undefined));
    } finally {
      await next.close();
    }
  });

  it('keeps retrying while Redis is unreachable, and repairs a failed invalidate once it is back', async () => {
    const client = await testRedisClient();
    client.on('error', () => {});
    const errors: unknown[] = [];
    const cache = createCache({
      redis: client,
      breaker: createCircuitBreaker({ resetAfterMs: 50 }),
      repairIntervalMs: 20,
      onError: (error) => errors.push(error),
    });
    try {
      await cache.store('k:gone-later', textCodec, 60, { value: 'old', version: 1 });
      // Redis unreachable: commands fail at once (no offline queue).
      client.disconnect();
      await cache.invalidate('k:gone-later');
      await cache.store('k:stored-later', textCodec, 60, { value: 'new', version: 5 });
      expect(await cache.getOrLoad('k:gone-later', textCodec, 60, async () => ({ value: 'db', version: 2 }))).toBe('db');
      // Repairs fail (each reported) without losing the keys.
      const failedSoFar = errors.length;
      await eventually(async () => (errors.length >= failedSoFar + 3 ? true : undefined));

      await client.connect();
      expect(await client.exists('k:gone-later')).toBe(1);
      expect(await cache.getOrLoad('k:gone-later', textCodec, 60, async () => ({ value: 'db', version: 2 }))).toBe('db');
      await eventually(async () => ((await client.exists('k:gone-later')) === 0 ? true : undefined));
    } finally {
      await cache.close();
      client.disconnect();
    }
  });

  it('does not let a load that began before a failed store fill the cache afterwards', async () => {
    const { breaker, open, elapse } = manualBreaker();
    const cache = createCache({ redis, breaker, repairIntervalMs: 10 });
    try {
      let release: (() => void) | undefined;
      const slowLoad = cache.getOrLoad('k:race', textCodec, 60, async () => {
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        return { value: 'v1 (read before the write)', version: 1 };
      });
      // The load has begun (after the cache's own read missed).
      await eventually(async () => (release ? true : undefined));
      // Something in Redis for the repair to delete, so that its pass can be seen.
      await redis.set('k:race', 'old entry');
      open();
      await cache.store('k:race', textCodec, 60, { value: 'v2', version: 2 });
      elapse();
      // The repair runs (and forgets the key) while the old load is still going.
      await eventually(async () => ((await redis.exists('k:race')) === 0 ? true : undefined));
      release!();
      expect(await slowLoad).toBe('v1 (read before the write)');
      // A fill would have been sent before the load returned, on this same connection: it would be seen here.
      expect(await redis.exists('k:race')).toBe(0);
      expect(await cache.getOrLoad('k:race', textCodec, 60, async () => ({ value: 'v2', version: 2 }))).toBe('v2');
    } finally {
      await cache.close();
    }
  });

  it('remembers a bounded number of stale keys, dropping the oldest with a report', async () => {
    const { breaker, open, elapse } = manualBreaker();
    const errors: unknown[] = [];
    const cache = createCache({ redis, breaker, maxStaleKeys: 3, repairIntervalMs: 60_000, onError: (error) => errors.push(error) });
    try {
      for (const n of [1, 2]) {
        await cache.store(`k:bound-${n}`, textCodec, 60, { value: `cached-${n}`, version: 1 });
      }
      open();
      for (const n of [1, 2, 3, 4]) {
        await cache.store(`k:bound-${n}`, textCodec, 60, { value: `new-${n}`, version: 2 });
      }
      expect(errors.filter((error) => error instanceof StaleKeysOverflowError)).toHaveLength(1);
      elapse();
      const load = (n: number) => async () => ({ value: `db-${n}`, version: 2 });
      // The oldest was forgotten: it is read from Redis again. The others still bypass it.
      expect(await cache.getOrLoad('k:bound-1', textCodec, 60, load(1))).toBe('cached-1');
      expect(await cache.getOrLoad('k:bound-2', textCodec, 60, load(2))).toBe('db-2');
    } finally {
      await cache.close();
    }
  });

  it('makes a last repair attempt on close', async () => {
    const { breaker, open, elapse } = manualBreaker();
    const cache = createCache({ redis, breaker, repairIntervalMs: 60_000 });
    await cache.store('k:closing', textCodec, 60, { value: 'v1', version: 1 });
    open();
    await cache.store('k:closing', textCodec, 60, { value: 'v2', version: 2 });
    elapse();
    expect(await redis.exists('k:closing')).toBe(1);
    await cache.close();
    expect(await redis.exists('k:closing')).toBe(0);
  });
});
