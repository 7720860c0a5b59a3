import { eventually, testServices, uniqueKeyPrefix } from '@clinical/testing';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { createRedisClient, waitForRedis, type RedisClient } from './createRedisClient.js';
import { createNearCache, type NearCache } from './nearCache.js';

const opened: { close(): void }[] = [];
afterEach(() => {
  for (const resource of opened.splice(0)) {
    resource.close();
  }
});

/** A service's client under a fresh prefix, a near cache over it, and a second process's client of the same keys. */
async function setup(): Promise<{ redis: RedisClient; near: NearCache; other: Redis; keyPrefix: string }> {
  const keyPrefix = uniqueKeyPrefix();
  const redis = createRedisClient({ url: testServices().redisUrl, keyPrefix });
  await waitForRedis(redis, 5_000);
  const near = createNearCache({ redis })!;
  const other = new Redis(testServices().redisUrl, { keyPrefix });
  opened.push(near, { close: () => redis.disconnect() }, { close: () => other.disconnect() });
  await eventually(async () => near.isTracking() || undefined, 5_000, 'tracking on');
  return { redis, near, other, keyPrefix };
}

describe('createNearCache', () => {
  it('answers a key it read from its copy, and drops the copy when another client changes the key', async () => {
    const { near, other } = await setup();
    await other.set('patient:1', 'v1');
    expect((await near.getBuffer('patient:1'))?.toString()).toBe('v1');
    expect(near.peek('patient:1')?.toString()).toBe('v1');

    await other.set('patient:1', 'v2');
    // Acknowledged to the other client before this read began: never served stale, not even once.
    expect((await near.getBuffer('patient:1'))?.toString()).toBe('v2');
  });

  it('never serves a copy older than a write acknowledged before the read, under a stream of writes', async () => {
    const { near, other } = await setup();
    await other.set('counter', '0');
    await near.getBuffer('counter');
    for (let value = 1; value <= 200; value += 1) {
      await other.set('counter', String(value));
      expect((await near.getBuffer('counter'))?.toString()).toBe(String(value));
      // Read again: a copy is kept and served (the barrier passed, nothing changed since).
      expect((await near.getBuffer('counter'))?.toString()).toBe(String(value));
    }
  });

  it('drops copies on a delete and on an expiry', async () => {
    const { near, other } = await setup();
    await other.set('a', '1');
    await other.set('b', '2', 'PX', 300);
    await near.getBuffer('a');
    await near.getBuffer('b');
    await other.del('a');
    await eventually(async () => near.peek('a') === undefined || undefined, 5_000, 'deleted key dropped');
    // Only once Redis has expired the key (it tells then), whatever the clock says.
    await eventually(async () => ((await other.exists('b')) === 0 && near.peek('b') === undefined) || undefined, 10_000, 'expired key dropped');
    expect(await near.getBuffer('b')).toBeNull();
  });

  it('does not keep a value whose read began before the key was written here (forget)', async () => {
    const { near, other } = await setup();
    await other.set('k', 'old');
    const read = near.getBuffer('k');
    // This process writes the key before the read is answered: the read may have seen the old value.
    near.forget('k');
    await other.set('k', 'new');
    await read;
    expect(near.peek('k')).toBeUndefined();
  });

  it('keeps no copy while its invalidation connection is down, and tracks again once it is back', async () => {
    const { near, other, keyPrefix } = await setup();
    await other.set('k', 'v1');
    await near.getBuffer('k');
    expect(near.peek('k')).toBeDefined();
    // Kill this near cache's invalidation connection: the server then sends it no invalidations.
    const clients = (await other.call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string;
    for (const line of clients.split('\n').filter((entry) => entry.includes(`name=near-cache-invalidations-${keyPrefix}`))) {
      const id = /id=(\d+)/.exec(line)?.[1];
      if (id) {
        await other.client('KILL', 'ID', id).catch(() => 0);
      }
    }
    await eventually(async () => near.peek('k') === undefined || undefined, 5_000, 'copies dropped');
    await other.set('k', 'v2');
    await eventually(async () => near.isTracking() || undefined, 10_000, 'tracking again');
    expect((await near.getBuffer('k'))?.toString()).toBe('v2');
    await other.set('k', 'v3');
    await eventually(async () => (await near.getBuffer('k'))?.toString() === 'v3' || undefined, 5_000, 'invalidated after reconnect');
  });

  it('is not made for a cluster', () => {
    const cluster = createRedisClient({ clusterNodes: ['127.0.0.1:1'], keyPrefix: 'x' });
    opened.push({ close: () => cluster.disconnect() });
    expect(createNearCache({ redis: cluster })).toBeUndefined();
  });
});
