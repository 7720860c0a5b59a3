import { UnavailableError } from '@clinical/errors';
import type { CircuitBreaker } from './circuitBreaker.js';
import type { RedisClient } from './createRedisClient.js';

/** What the store keeps of a session: enough to audit who opened it. */
export interface Session {
  readonly sid: string;
  readonly sub: string;
  readonly createdAt: string;
}

export interface SessionStoreOptions {
  readonly redis: RedisClient;
  readonly breaker: CircuitBreaker;
  /** Idle lifetime: each use extends the session by this much (sliding). */
  readonly ttlSeconds: number;
  /**
   * A session confirmed within this many ms is not asked again, saving a
   * Redis round trip per call; a revocation takes at most this long to bite.
   */
  readonly recheckAfterMs?: number;
  /**
   * While Redis is unreachable, sessions confirmed within this many ms stay
   * usable; others are refused with UNAVAILABLE, never silently accepted.
   */
  readonly outageGraceMs?: number;
  readonly now?: () => number;
}

export interface SessionStore {
  /** Opens a session. */
  create(session: Session): Promise<void>;
  /**
   * True if the session exists (and extends it), false if it expired or was revoked.
   * A session confirmed within recheckAfterMs is answered at once, without a
   * promise: that is nearly every call, and under OpenTelemetry each promise
   * costs an async-hook call.
   * @throws UnavailableError when Redis is down and the session was not confirmed recently.
   */
  isActive(sid: string): boolean | Promise<boolean>;
  /** Ends a session at once in this process, and everywhere within recheckAfterMs. */
  revoke(sid: string): Promise<void>;
}

const sessionKey = (sid: string) => `session:${sid}`;

/** Sessions in Redis with a sliding TTL (GETEX ... EX refreshes on each check). */
export function createSessionStore(options: SessionStoreOptions): SessionStore {
  const { redis, breaker } = options;
  const now = options.now ?? Date.now;
  const recheckAfterMs = options.recheckAfterMs ?? 1_000;
  const outageGraceMs = options.outageGraceMs ?? 300_000;
  const confirmedAt = new Map<string, number>();

  /** Asks Redis whether the session still exists, extending it if so. */
  async function recheck(sid: string, last: number | undefined): Promise<boolean> {
    let stored: string | null;
    try {
      stored = await breaker.run(() => redis.getex(sessionKey(sid), 'EX', options.ttlSeconds));
    } catch (error) {
      if (last !== undefined && now() - last < outageGraceMs) {
        return true;
      }
      throw new UnavailableError('session store unavailable, retry later', { cause: error });
    }
    if (stored === null) {
      confirmedAt.delete(sid);
      return false;
    }
    if (confirmedAt.size > 100_000) {
      confirmedAt.clear();
    }
    confirmedAt.set(sid, now());
    return true;
  }

  return {
    async create(session) {
      await breaker.run(() => redis.set(sessionKey(session.sid), JSON.stringify(session), 'EX', options.ttlSeconds));
      confirmedAt.set(session.sid, now());
    },
    isActive(sid) {
      const last = confirmedAt.get(sid);
      return last !== undefined && now() - last < recheckAfterMs ? true : recheck(sid, last);
    },
    async revoke(sid) {
      confirmedAt.delete(sid);
      await breaker.run(() => redis.del(sessionKey(sid)));
    },
  };
}

/**
 * Sessions of a process that has no Redis (STATE_STORE=memory, for
 * development): no store is shared with the other services or with
 * `npm run token`, so a validly signed, unexpired token is taken as a live
 * session; a revocation holds in this process only. The service says so at start.
 */
export function createInProcessSessionStore(): SessionStore {
  const revoked = new Set<string>();
  return {
    async create(session) {
      revoked.delete(session.sid);
    },
    isActive(sid) {
      return !revoked.has(sid);
    },
    async revoke(sid) {
      revoked.add(sid);
    },
  };
}
