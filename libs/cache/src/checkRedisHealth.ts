import type { RedisClient } from './createRedisClient.js';

/** True when Redis answers PING in time. Never throws. */
export async function checkRedisHealth(redis: RedisClient): Promise<boolean> {
  try {
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  }
}
