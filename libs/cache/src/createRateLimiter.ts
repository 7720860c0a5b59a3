import { ResourceExhaustedError } from '@clinical/errors';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { CircuitBreaker } from './circuitBreaker.js';
import type { RedisClient } from './createRedisClient.js';

export interface RateLimiterOptions {
  readonly redis: RedisClient;
  readonly breaker: CircuitBreaker;
  /** Points a key may spend per window. */
  readonly points: number;
  /** Window length in seconds. */
  readonly windowSeconds: number;
  /** Distinguishes this limiter's keys from others on the same Redis. */
  readonly keyPrefix?: string;
}

export interface RateLimiter {
  /**
   * Spends `cost` points of `key`'s window.
   * @throws ResourceExhaustedError with the time until enough points return.
   */
  consume(key: string, cost: number): Promise<void>;
}

/**
 * A fixed-window limiter shared by all replicas through Redis
 * (rate-limiter-flexible). When Redis fails, or the breaker says it recently
 * did, each process limits on its own with an in-memory insurance limiter of
 * the same size, so an outage neither fails requests nor lifts the limit.
 */
export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const keyPrefix = options.keyPrefix ?? 'rl';
  const insurance = new RateLimiterMemory({
    points: options.points,
    duration: options.windowSeconds,
    keyPrefix: `${keyPrefix}:local`,
  });
  const shared = new RateLimiterRedis({
    storeClient: options.redis,
    points: options.points,
    duration: options.windowSeconds,
    keyPrefix,
    rejectIfRedisNotReady: true,
    insuranceLimiter: insurance,
  });

  const spent = () => undefined;
  const refused = (rejection: unknown): never => {
    if (rejection instanceof RateLimiterRes) {
      throw new ResourceExhaustedError('rate limit exceeded', Math.max(rejection.msBeforeNext, 1));
    }
    throw rejection;
  };
  return {
    // A plain then rather than an async function: one promise less per call.
    consume(key, cost) {
      const limiter = options.breaker.isOpen() ? insurance : shared;
      return limiter.consume(key, cost).then(spent, refused);
    },
  };
}
