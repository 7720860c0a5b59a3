import { ResourceExhaustedError } from '@clinical/errors';
import { eventually } from '@clinical/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCircuitBreaker } from './circuitBreaker.js';
import { createRateLimiter } from './createRateLimiter.js';
import { createRedisClient, type RedisClient } from './createRedisClient.js';
import { testRedisClient } from './testRedis.js';

let redis: RedisClient;

beforeAll(async () => {
  redis = await testRedisClient();
});
afterAll(() => {
  redis.disconnect();
});

describe('createRateLimiter', () => {
  it('spends weighted points and refuses with the time until the window frees', async () => {
    const limiter = createRateLimiter({ redis, breaker: createCircuitBreaker(), points: 10, windowSeconds: 60 });
    await limiter.consume('alice', 4);
    await limiter.consume('alice', 6);
    const refusal = await limiter.consume('alice', 1).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ResourceExhaustedError);
    expect((refusal as ResourceExhaustedError).retryAfterMs).toBeGreaterThan(50_000);
    // Others have their own window.
    await expect(limiter.consume('bob', 10)).resolves.toBeUndefined();
  });

  it('shares the window between replicas through Redis', async () => {
    const replicaA = createRateLimiter({ redis, breaker: createCircuitBreaker(), points: 5, windowSeconds: 60, keyPrefix: 'rl-shared' });
    const replicaB = createRateLimiter({ redis, breaker: createCircuitBreaker(), points: 5, windowSeconds: 60, keyPrefix: 'rl-shared' });
    await replicaA.consume('carol', 3);
    await replicaB.consume('carol', 2);
    await expect(replicaA.consume('carol', 1)).rejects.toBeInstanceOf(ResourceExhaustedError);
  });

  it('admits a caller well inside its limit without a round trip, and adds its spending in Redis in batches', async () => {
    const limiter = createRateLimiter({ redis, breaker: createCircuitBreaker(), points: 100, windowSeconds: 60, keyPrefix: 'rl-batched' });
    await limiter.consume('gina', 1);
    const sent = await redis.get('rl-batched:gina');
    expect(sent).toBe('1');
    for (let call = 0; call < 20; call += 1) {
      await limiter.consume('gina', 2);
    }
    await eventually(async () => ((await redis.get('rl-batched:gina')) === '41' ? true : undefined), 5_000, 'the batch added in Redis');
    // Past half the points, each call asks Redis: the limit holds to the point.
    await limiter.consume('gina', 59);
    await expect(limiter.consume('gina', 1)).rejects.toBeInstanceOf(ResourceExhaustedError);
    expect(await redis.get('rl-batched:gina')).toBe('101');
  });

  it('keeps limiting in-process when Redis is down', async () => {
    const down = createRedisClient({ url: 'redis://127.0.0.1:1' });
    down.on('error', () => {});
    try {
      const limiter = createRateLimiter({ redis: down, breaker: createCircuitBreaker(), points: 3, windowSeconds: 60 });
      await limiter.consume('dave', 3);
      await expect(limiter.consume('dave', 1)).rejects.toBeInstanceOf(ResourceExhaustedError);
    } finally {
      down.disconnect();
    }
  });

  it('uses the in-process limiter while the breaker is open', async () => {
    const breaker = createCircuitBreaker({ failureThreshold: 1, resetAfterMs: 60_000 });
    breaker.recordFailure();
    const limiter = createRateLimiter({ redis, breaker, points: 2, windowSeconds: 60, keyPrefix: 'rl-open' });
    await limiter.consume('erin', 2);
    await expect(limiter.consume('erin', 1)).rejects.toBeInstanceOf(ResourceExhaustedError);
    expect(await redis.keys('rl-open*')).toEqual([]);
  });

  it('limits in process when it is given no Redis (STATE_STORE=memory)', async () => {
    const limiter = createRateLimiter({ breaker: createCircuitBreaker(), points: 4, windowSeconds: 60 });
    await limiter.consume('frank', 4);
    const refusal = await limiter.consume('frank', 1).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ResourceExhaustedError);
    expect((refusal as ResourceExhaustedError).retryAfterMs).toBeGreaterThan(50_000);
  });
});
