import type { RedisClient } from '@clinical/cache';
import type { ServiceRuntime } from '@clinical/server-kit';
import { selectLatestRefresh, type RefreshGeneration } from './refreshQueries.js';

/** Redis key of the latest successful refresh, `<refresh_id>|<as-of epoch ms>`: every replica reads it. */
export const CURRENT_REFRESH_KEY = 'analytics:current-refresh';

/** Kept a day past its last confirmation; when it is gone, the database answers and sets it again. */
const HINT_TTL_SECONDS = 86_400;

/** Moves the hint forward only: a slow writer of an older refresh never puts it back. */
const ADVANCE = `
local current = redis.call('GET', KEYS[1])
if current then
  local id = tonumber(string.match(current, '^(%d+)|'))
  if id and id > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[3])
return 1`;

/**
 * Which refresh the figures are at, for every request (its id names the
 * cache keys). Read from Redis, so that a cached read never waits on
 * PostgreSQL, which a running refresh keeps busy; from the log when Redis
 * has no answer. The refresher advances the hint right after its commit and
 * before it answers; loads that find a newer refresh, and the schedule's
 * ticks, advance it too, so a replica that died between commit and hint
 * delays the move to new keys by one tick at most (README: caching).
 * Without Redis (STATE_STORE=memory, one replica) the hint is kept in process.
 */
export interface CurrentRefresh {
  /** The latest successful refresh; null when none is on record. */
  get(): Promise<RefreshGeneration | null>;
  /** Records that `generation` committed (ignored when the hint is already newer). */
  advance(generation: RefreshGeneration): Promise<void>;
}

export function createCurrentRefresh(runtime: Pick<ServiceRuntime, 'pool' | 'redis' | 'breaker' | 'logger'>): CurrentRefresh {
  const { pool, redis } = runtime;
  return redis ? redisHint(pool, redis, runtime.breaker) : inProcessHint(pool);
}

function redisHint(pool: ServiceRuntime['pool'], redis: RedisClient, breaker: ServiceRuntime['breaker']): CurrentRefresh {
  async function advance(generation: RefreshGeneration): Promise<void> {
    try {
      await breaker.run(() =>
        redis.eval(ADVANCE, 1, CURRENT_REFRESH_KEY, generation.refresh_id, String(generation.started_at.getTime()), HINT_TTL_SECONDS),
      );
    } catch {
      // Redis trouble: readers fall back to the database until it is back.
    }
  }

  return {
    async get() {
      try {
        const hint = await breaker.run(() => redis.get(CURRENT_REFRESH_KEY));
        const [, refreshId, asOfMs] = (hint && /^(\d+)\|(\d+)$/.exec(hint)) || [];
        if (refreshId && asOfMs) {
          return { refresh_id: refreshId, started_at: new Date(Number(asOfMs)) };
        }
      } catch {
        // Fall through to the database.
      }
      const latest = await selectLatestRefresh(pool);
      if (latest) {
        await advance(latest);
      }
      return latest;
    },
    advance,
  };
}

function inProcessHint(pool: ServiceRuntime['pool']): CurrentRefresh {
  let current: RefreshGeneration | null = null;
  const advance = async (generation: RefreshGeneration) => {
    if (!current || BigInt(generation.refresh_id) > BigInt(current.refresh_id)) {
      current = generation;
    }
  };
  return {
    async get() {
      if (!current) {
        const latest = await selectLatestRefresh(pool);
        if (latest) {
          await advance(latest);
        }
      }
      return current;
    },
    advance,
  };
}
