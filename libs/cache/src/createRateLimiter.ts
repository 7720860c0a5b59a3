import { ResourceExhaustedError } from '@clinical/errors';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import type { CircuitBreaker } from './circuitBreaker.js';
import type { RedisClient } from './createRedisClient.js';

export interface RateLimiterOptions {
  /** Absent (STATE_STORE=memory): each process limits on its own. */
  readonly redis?: RedisClient;
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
 * Starts the window if there is none, spends the cost, and returns the points
 * spent in the window and the ms until it ends: one round trip. The same
 * script and keys as rate-limiter-flexible's RateLimiterRedis, which this
 * replaces on the hot path.
 */
const CONSUME_IN_WINDOW = `
redis.call('set', KEYS[1], 0, 'EX', ARGV[2], 'NX')
local consumed = redis.call('incrby', KEYS[1], ARGV[1])
local ttl = redis.call('pttl', KEYS[1])
if ttl == -1 then
  redis.call('expire', KEYS[1], ARGV[2])
  ttl = 1000 * ARGV[2]
end
return {consumed, ttl}`;

type WindowCommand = (key: string, cost: number, windowSeconds: number) => Promise<[number, number]>;

/**
 * A fixed-window limiter shared by all replicas through Redis. When Redis
 * fails, or the breaker says it recently did, each process limits on its own
 * with an in-memory insurance limiter of the same size (rate-limiter-flexible),
 * so an outage neither fails requests nor lifts the limit.
 *
 * The Redis path is a defined script (EVALSHA) called directly rather than
 * through RateLimiterRedis: that one wraps each call in several promises, and
 * under OpenTelemetry every promise costs async-hook calls.
 */
export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const { redis, breaker, points, windowSeconds } = options;
  const keyPrefix = options.keyPrefix ?? 'rl';
  const insurance = new RateLimiterMemory({ points, duration: windowSeconds, keyPrefix: `${keyPrefix}:local` });

  const refusal = (msBeforeNext: number) => new ResourceExhaustedError('rate limit exceeded', Math.max(msBeforeNext, 1));
  const consumeLocally = (key: string, cost: number): Promise<void> =>
    insurance.consume(key, cost).then(
      () => undefined,
      (rejection: unknown) => {
        throw rejection instanceof RateLimiterRes ? refusal(rejection.msBeforeNext) : rejection;
      },
    );

  if (!redis) {
    return { consume: consumeLocally };
  }
  redis.defineCommand('consumeInRateWindow', { numberOfKeys: 1, lua: CONSUME_IN_WINDOW });
  const consumeInWindow = (redis as unknown as { consumeInRateWindow: WindowCommand }).consumeInRateWindow.bind(redis);
  return {
    consume(key, cost) {
      if (breaker.isOpen() || redis.status !== 'ready') {
        return consumeLocally(key, cost);
      }
      return consumeInWindow(`${keyPrefix}:${key}`, cost, windowSeconds).then(
        ([consumed, msBeforeNext]) => {
          if (consumed > points) {
            throw refusal(msBeforeNext);
          }
        },
        () => consumeLocally(key, cost),
      );
    },
  };
}
