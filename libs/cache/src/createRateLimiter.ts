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
  /** How often points spent without asking Redis are added there. Default 50 ms. */
  readonly syncIntervalMs?: number;
  readonly now?: () => number;
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

/** What this process knows of one key's window in Redis. */
interface WindowView {
  /** Points Redis counted in the window when it last answered (every replica's). */
  spent: number;
  /** Points spent here since, not yet added in Redis. */
  unsent: number;
  /** Points on their way to Redis, not answered yet (one connection: answers come in order). */
  pending: number;
  endsAt: number;
}

/**
 * A fixed-window limiter shared by all replicas through Redis. When Redis
 * fails, or the breaker says it recently did, each process limits on its own
 * with an in-memory insurance limiter of the same size (rate-limiter-flexible),
 * so an outage neither fails requests nor lifts the limit.
 *
 * A call does not wait for Redis while its caller is well inside the limit:
 * while what Redis last counted plus what this process spent since (sent to
 * Redis or not) stays under half the points, the call is admitted and its cost added to Redis
 * with the others' in one command per key every `syncIntervalMs`, whose
 * answer brings this process the other replicas' spending. Past half, every
 * call asks Redis (one round trip, exact to the point). Across replicas the
 * limit can so be passed by at most what the replicas admit in one interval
 * before they hear of each other; within one process never.
 */
export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const { redis, breaker, points, windowSeconds } = options;
  const keyPrefix = options.keyPrefix ?? 'rl';
  const syncIntervalMs = options.syncIntervalMs ?? 50;
  const now = options.now ?? Date.now;
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
  const views = new Map<string, WindowView>();
  let syncTimer: NodeJS.Timeout | undefined;

  /**
   * Adds `cost` in Redis and takes in what Redis now counts; resolves with
   * this answer's count (the view may move on). Until it is answered, the
   * cost counts as pending, so that no call is admitted locally on a count
   * that does not include it.
   */
  const spendInRedis = (key: string, cost: number): Promise<{ spent: number; msBeforeNext: number }> => {
    let view = views.get(key);
    if (!view) {
      view = { spent: 0, unsent: 0, pending: 0, endsAt: 0 };
      views.set(key, view);
    }
    const sentWith = view;
    sentWith.pending += cost;
    return breaker.run(() => consumeInWindow(`${keyPrefix}:${key}`, cost, windowSeconds)).then(
      ([spent, msBeforeNext]) => {
        sentWith.pending -= cost;
        // Within a window the count only grows.
        sentWith.spent = sentWith.endsAt > now() ? Math.max(sentWith.spent, spent) : spent;
        sentWith.endsAt = now() + msBeforeNext;
        return { spent, msBeforeNext };
      },
      (error: unknown) => {
        sentWith.pending -= cost;
        throw error;
      },
    );
  };

  function sync(): void {
    syncTimer = undefined;
    const time = now();
    for (const [key, view] of views) {
      if (view.unsent === 0) {
        if (view.endsAt <= time && view.pending === 0) {
          views.delete(key);
        }
        continue;
      }
      const cost = view.unsent;
      view.unsent = 0;
      // Lost when Redis fails: the points were admitted already, and Redis's count is only a little low.
      spendInRedis(key, cost).catch(() => {});
    }
  }

  return {
    consume(key, cost) {
      if (breaker.isOpen() || redis.status !== 'ready') {
        return consumeLocally(key, cost);
      }
      const view = views.get(key);
      if (view && view.endsAt > now() && view.spent + view.pending + view.unsent + cost <= points / 2) {
        view.unsent += cost;
        syncTimer ??= setTimeout(sync, syncIntervalMs).unref();
        return Promise.resolve();
      }
      const unsent = view && view.endsAt > now() ? view.unsent : 0;
      if (view) {
        view.unsent = 0;
      }
      return spendInRedis(key, unsent + cost).then(
        (answer) => {
          if (answer.spent > points) {
            throw refusal(answer.msBeforeNext);
          }
        },
        () => consumeLocally(key, cost),
      );
    },
  };
}
