import type { CircuitBreaker, NearCache, RedisClient } from '@clinical/cache';
import { sql, type CommonQueryMethods, type DatabasePool } from '@clinical/db';
import { UnavailableError } from '@clinical/errors';
import { z } from 'zod';

/**
 * Whether a token's session is live. PostgreSQL (`sessions`) is the source
 * of truth; Redis, when there is one, caches each answer so that a call
 * costs one Redis command: `live` slides with use for the idle timeout, and
 * `revoked` marks an ended session.
 */
export interface SessionStore {
  /**
   * True while the session is live, checked on every call (a process keeps
   * session states only as near-cache copies that Redis invalidates, and a
   * copy is served only once every invalidation sent before the call arrived
   * has been heard): a revocation bites on the next call, on every service
   * and replica.
   * @throws UnavailableError when neither Redis nor PostgreSQL can say.
   */
  isActive(sid: string): Promise<boolean>;
  /** Marks sessions ended in the cache, after their revocation committed in PostgreSQL. */
  forget(sids: readonly string[]): Promise<void>;
}

export interface SessionStoreOptions {
  readonly pool: DatabasePool;
  /** Absent: every check asks PostgreSQL (STATE_STORE=memory). */
  readonly redis?: RedisClient;
  /**
   * Reads session states through the process's copies, which Redis keeps
   * coherent (a revocation drops them everywhere): a check then costs no
   * round trip, and the idle timeout slides by an EXPIRE at most once a minute.
   */
  readonly nearCache?: NearCache;
  readonly breaker: CircuitBreaker;
  /** A session unused this long ends (sliding). */
  readonly idleTimeoutSeconds: number;
  readonly now?: () => number;
  /** Told of every check through Redis: whether Redis knew the session's state (metrics; must be cheap). */
  readonly onCacheLookup?: (hit: boolean) => void;
}

const LIVE = 'live';
const REVOKED = 'revoked';
const sessionKey = (sid: string) => `session:${sid}`;

/** Whether the session is live, in PostgreSQL's own terms (not revoked, not past its end, used within the idle timeout). */
async function liveInDatabase(db: CommonQueryMethods, sid: string, idleTimeoutSeconds: number): Promise<boolean> {
  const live = await db.maybeOneFirst(sql.type(z.object({ live: z.boolean() }))`
    SELECT revoked_at IS NULL AND expires_at > now()
           AND last_seen_at > now() - make_interval(secs => ${idleTimeoutSeconds}) AS live
      FROM sessions WHERE sid = ${sid}
  `);
  return live === true;
}

export function createSessionStore(options: SessionStoreOptions): SessionStore {
  const { pool, redis, breaker, idleTimeoutSeconds } = options;
  const now = options.now ?? Date.now;
  // PostgreSQL hears of a session's use at most once per quarter of the idle timeout from this process:
  // enough that a Redis which lost its data logs no active caller out, without a write per call.
  const writeBackEveryMs = (idleTimeoutSeconds * 1_000) / 4;
  const writtenBackAt = new Map<string, number>();
  // With copies in the process, a check no longer slides the key's expiry (GETEX): an EXPIRE does, now and then,
  // so that the idle timeout is kept to within a minute.
  const slideEveryMs = Math.min(60_000, (idleTimeoutSeconds * 1_000) / 4);
  const slidAt = new Map<string, number>();

  function slideIdleTimeout(sid: string): void {
    const last = slidAt.get(sid);
    if (!redis || (last !== undefined && now() - last < slideEveryMs)) {
      return;
    }
    if (slidAt.size > 100_000) {
      slidAt.clear();
    }
    slidAt.set(sid, now());
    breaker.run(() => redis.expire(sessionKey(sid), idleTimeoutSeconds)).catch(() => slidAt.delete(sid));
  }

  /** The session's state in Redis (null: not there), sliding its idle timeout. */
  function readState(redis: RedisClient, sid: string): Promise<string | null> {
    const { nearCache } = options;
    if (!nearCache) {
      return breaker.run(() => redis.getex(sessionKey(sid), 'EX', idleTimeoutSeconds));
    }
    return breaker.run(() => nearCache.getBuffer(sessionKey(sid))).then((state) => {
      if (state !== null) {
        slideIdleTimeout(sid);
      }
      return state === null ? null : state.toString();
    });
  }

  function writeBackUse(sid: string): void {
    const last = writtenBackAt.get(sid);
    if (last !== undefined && now() - last < writeBackEveryMs) {
      return;
    }
    if (writtenBackAt.size > 100_000) {
      writtenBackAt.clear();
    }
    writtenBackAt.set(sid, now());
    pool
      .query(sql.type(z.object({}))`UPDATE sessions SET last_seen_at = now() WHERE sid = ${sid} AND revoked_at IS NULL`)
      .catch(() => writtenBackAt.delete(sid));
  }

  async function fromDatabase(sid: string): Promise<boolean> {
    try {
      return await liveInDatabase(pool, sid, idleTimeoutSeconds);
    } catch (error) {
      throw new UnavailableError('the session store is unavailable; retry later', { cause: error });
    }
  }

  return {
    async isActive(sid) {
      if (!redis) {
        const live = await fromDatabase(sid);
        if (live) {
          writeBackUse(sid);
        }
        return live;
      }
      let cached: string | null | undefined;
      try {
        cached = await readState(redis, sid);
      } catch {
        // Redis is away: PostgreSQL answers alone, call by call.
        cached = undefined;
      }
      if (cached === LIVE) {
        options.onCacheLookup?.(true);
        writeBackUse(sid);
        return true;
      }
      if (cached === REVOKED) {
        options.onCacheLookup?.(true);
        return false;
      }
      options.onCacheLookup?.(false);
      const live = await fromDatabase(sid);
      if (live) {
        writeBackUse(sid);
      }
      if (cached === null) {
        // Not cached (first use, an idle expiry, or a Redis that lost its data): cache the answer, unless
        // a revocation got there first (NX): its mark must never be overwritten by an older answer.
        await breaker.run(() => redis.set(sessionKey(sid), live ? LIVE : REVOKED, 'EX', idleTimeoutSeconds, 'NX')).catch(() => {});
        options.nearCache?.forget(sessionKey(sid));
      }
      return live;
    },
    async forget(sids) {
      for (const sid of sids) {
        writtenBackAt.delete(sid);
        slidAt.delete(sid);
      }
      if (redis && sids.length > 0) {
        try {
          await breaker.run(() => Promise.all(sids.map((sid) => redis.set(sessionKey(sid), REVOKED, 'EX', idleTimeoutSeconds))));
        } finally {
          // Redis tells every other process; this one drops its copies at once.
          for (const sid of sids) {
            options.nearCache?.forget(sessionKey(sid));
          }
        }
      }
    },
  };
}

/** A session to open: who, and until when at most. */
export interface NewSession {
  readonly sid: string;
  readonly sub: string;
  readonly expiresAt: Date;
}

/**
 * Opens a session (audited). Run by the issuing side with the database
 * owner's rights (`npm run token`, tests, an identity integration): the
 * services may check sessions, never open them.
 */
export async function openSession(db: CommonQueryMethods, session: NewSession): Promise<void> {
  await db.query(sql.type(z.object({}))`
    INSERT INTO sessions (sid, sub, expires_at) VALUES (${session.sid}, ${session.sub}, ${session.expiresAt.toISOString()}::timestamptz)
  `);
}
