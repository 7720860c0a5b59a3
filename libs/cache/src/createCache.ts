import type { ChainableCommander } from 'ioredis';
import type { CircuitBreaker } from './circuitBreaker.js';
import type { RedisClient } from './createRedisClient.js';
import type { NearCache } from './nearCache.js';

/** Turns cached values into bytes and back (for example a ts-proto message's encode/decode). */
export interface CacheCodec<T> {
  encode(value: T): Uint8Array;
  decode(bytes: Uint8Array): T;
}

/** A value with the database version it was read at (row_version). */
export interface Versioned<T> {
  readonly value: T;
  readonly version: number;
}

export interface CacheOptions {
  readonly redis: RedisClient;
  /** Reads through the process's copies of hot entries (kept coherent by Redis); without one every read is a GET. */
  readonly nearCache?: NearCache;
  /** Shared with the other users of this Redis client, so one failure signal serves all. */
  readonly breaker: CircuitBreaker;
  /** Told when the store misbehaves or a value cannot be encoded; the request itself goes on without the cache. */
  readonly onError?: (error: unknown) => void;
  /**
   * Told of every getOrLoad: `hit` when the value came from the cache, false
   * when the loader served it (not cached, a stale key, or the store failing).
   * For metrics: it runs on every read, so it must be cheap and never throw.
   */
  readonly onLookup?: (key: string, hit: boolean) => void;
  /**
   * Most keys remembered as possibly stale (a store or invalidate after a
   * write failed); past it the oldest is forgotten, and that is reported.
   * Default 10,000.
   */
  readonly maxStaleKeys?: number;
  /** How often stale keys are retried (deleted from Redis). Default 1,000 ms. */
  readonly repairIntervalMs?: number;
  /**
   * Where stale keys are also written down outside the process, so that they
   * outlive it: a process that stops before Redis answers again leaves them to
   * whichever process reads the journal next (restoreStale, and every
   * `journalPollMs`). Without one, a stale key lives in this process alone.
   */
  readonly journal?: StaleKeyJournal;
  /** How often the journal is read for keys other processes marked. Default 5,000 ms. */
  readonly journalPollMs?: number;
}

/**
 * Stale keys kept where every process of every service can read them (a
 * PostgreSQL table): a key whose store or invalidate failed is recorded, and
 * forgotten once its entry is deleted from Redis.
 */
export interface StaleKeyJournal {
  /** The keys recorded and not yet forgotten, at most `limit`. */
  read(limit: number): Promise<readonly string[]>;
  record(key: string): Promise<void>;
  forget(keys: readonly string[]): Promise<void>;
}

/** Reported when more keys failed to store than the cache remembers: the oldest may stay stale in Redis until its TTL. */
export class StaleKeysOverflowError extends Error {
  constructor(readonly limit: number) {
    super(`more than ${limit} cache keys failed to store or invalidate; the oldest may stay stale until its TTL`);
    this.name = 'StaleKeysOverflowError';
  }
}

export interface Cache {
  /**
   * Returns the cached value of `key`, or loads it (one load per key at a time
   * in this process, however many callers miss together) and caches it.
   * Redis failures never fail the call: it falls through to `load`.
   */
  getOrLoad<T>(
    key: string,
    codec: CacheCodec<T>,
    ttlSeconds: number,
    load: () => Promise<Versioned<T> | undefined>,
  ): Promise<T | undefined>;
  /**
   * Writes a value after its transaction committed. Only a newer version
   * replaces what is cached, so a slow reader can never put back a value
   * older than the one a writer just stored.
   */
  store<T>(key: string, codec: CacheCodec<T>, ttlSeconds: number, entry: Versioned<T>): Promise<void>;
  /** Removes a key (after commit). */
  invalidate(key: string): Promise<void>;
  /**
   * Takes in the stale keys of the journal (those other processes, or this
   * service before a restart, could not repair): call it before serving, so
   * that no read returns an entry a write could not invalidate. Nothing
   * without a journal.
   * @throws when the journal cannot be read.
   */
  restoreStale(): Promise<void>;
  /**
   * Stops the background repair of stale keys, after one last attempt at it
   * (while Redis is still connected): call it on shutdown.
   */
  close(): Promise<void>;
}

/** Entries are a fixed-width decimal version, then the encoded value. */
export const VERSION_WIDTH = 16;

/** SET if absent or older: byte order of fixed-width decimal versions is numeric order. */
const STORE_IF_NEWER = `
local current = redis.call('GETRANGE', KEYS[1], 0, ${VERSION_WIDTH - 1})
if current ~= '' and current >= string.sub(ARGV[1], 1, ${VERSION_WIDTH}) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1`;

function frame(version: number, bytes: Uint8Array): Buffer {
  const header = Buffer.from(String(version).padStart(VERSION_WIDTH, '0'), 'latin1');
  return Buffer.concat([header, bytes]);
}

/**
 * Where entries live: framed bytes by key. Each method may fail (the cache
 * then goes on without it); the framed versions compare as bytes.
 */
export interface CacheStore {
  read(key: string): Promise<Buffer | null>;
  /** Writes `framed` unless the entry held has the same or a newer version. */
  writeIfNewer(key: string, framed: Buffer, ttlSeconds: number): Promise<unknown>;
  remove(key: string): Promise<unknown>;
}

/**
 * Entries in Redis, every command through the process's breaker; reads
 * through the near cache when there is one, whose copy of a key this process
 * writes is dropped once the write is answered (the invalidation Redis sends
 * for it may arrive later).
 */
function redisStore(redis: RedisClient, breaker: CircuitBreaker, nearCache?: NearCache): CacheStore {
  const written = <T>(key: string, write: Promise<T>): Promise<T> =>
    nearCache ? write.finally(() => nearCache.forget(key)) : write;
  if (redis.isCluster) {
    return {
      read: (key) => breaker.run(() => redis.getBuffer(key)),
      writeIfNewer: (key, framed, ttlSeconds) => replicated(breaker, redis.pipeline().eval(STORE_IF_NEWER, 1, key, framed, ttlSeconds)),
      remove: (key) => replicated(breaker, redis.pipeline().del(key)),
    };
  }
  return {
    read: nearCache ? (key) => breaker.run(() => nearCache.getBuffer(key)) : (key) => breaker.run(() => redis.getBuffer(key)),
    writeIfNewer: (key, framed, ttlSeconds) => written(key, breaker.run(() => redis.eval(STORE_IF_NEWER, 1, key, framed, ttlSeconds))),
    remove: (key) => written(key, breaker.run(() => redis.del(key))),
  };
}

/** How long a write to a cluster waits for its master's replica to confirm it. */
const REPLICA_CONFIRM_MS = 50;

/** A write to a cluster that its master's replica did not confirm in time: it may be lost in a failover. */
class UnreplicatedWriteError extends Error {
  constructor() {
    super(`a cache write was not confirmed by a replica within ${REPLICA_CONFIRM_MS} ms`);
    this.name = 'UnreplicatedWriteError';
  }
}

/**
 * Sends a one-key write and a WAIT for one replica to the key's master, and
 * answers the write's reply once a replica confirmed it. Replication is
 * asynchronous: a failover promotes the replica, and a write the master
 * answered but never passed on is lost with it, bringing back the entry it
 * replaced. Unconfirmed, the write counts as failed (the cache marks the key
 * stale and repairs it), though not against Redis's health: the breaker sees
 * only the commands' own errors.
 */
async function replicated(breaker: CircuitBreaker, pipeline: ChainableCommander): Promise<unknown> {
  const replies = await breaker.run(async () => {
    const results = (await pipeline.call('WAIT', 1, REPLICA_CONFIRM_MS).exec()) ?? [];
    const failed = results.find(([error]) => error);
    if (failed) {
      throw failed[0];
    }
    return results.map(([, reply]) => reply);
  });
  if (!(Number(replies[1]) >= 1)) {
    throw new UnreplicatedWriteError();
  }
  return replies[0];
}

/** Keys deleted at once (in parallel, so auto-pipelined) by a repair pass, and the most per pass. */
const REPAIR_BATCH = 100;
const REPAIR_PASS_MOST = 2_000;

/**
 * Cache-aside over Redis, with single-flight loads and version-guarded writes.
 *
 * Writers store (or invalidate) after commit; that is what keeps the cache
 * consistent, the TTL is only a backstop. When such a store or invalidate
 * fails (Redis down, breaker open, a value the codec cannot encode), the entry
 * in Redis may be the old record. The key is then remembered as stale: reads
 * of it in this process go straight to the loader and do not fill, and a
 * background timer keeps deleting it from Redis (through the breaker) until
 * that succeeds, then forgets it. Other processes see the old entry until
 * then, which is as soon as Redis answers again.
 */
export function createCache(options: CacheOptions): Cache {
  return createCacheOver(redisStore(options.redis, options.breaker, options.nearCache), options);
}

/**
 * The cache's logic over any store (createCache's Redis; createMemoryCache's
 * process memory, where no write ever fails).
 */
export function createCacheOver(store: CacheStore, options: Omit<CacheOptions, 'redis' | 'breaker'>): Cache {
  const maxStaleKeys = options.maxStaleKeys ?? 10_000;
  const repairIntervalMs = options.repairIntervalMs ?? 1_000;
  const inflight = new Map<string, Promise<Versioned<unknown> | undefined>>();
  const reportError = (error: unknown) => {
    try {
      options.onError?.(error);
    } catch {
      // A failing reporter must not fail the request (or escape a detached promise).
    }
  };

  /** Stale keys, oldest first, each with the mark it was last given. */
  const stale = new Map<string, number>();
  /**
   * Moves whenever a key is marked stale or forgotten. A load that began
   * before it moved does not fill the cache: it may have read the record from
   * before a write whose store failed, and the key may already be repaired.
   */
  let staleEpoch = 0;
  let repairTimer: NodeJS.Timeout | undefined;
  let repairing: Promise<void> | undefined;
  let closed = false;

  function markStale(key: string): void {
    options.journal?.record(key).catch(reportError);
    holdStale(key);
  }

  /** Marks a key stale in this process (what markStale does besides writing it down). */
  function holdStale(key: string): void {
    staleEpoch += 1;
    stale.delete(key);
    stale.set(key, staleEpoch);
    if (stale.size > maxStaleKeys) {
      const oldest = stale.keys().next().value as string;
      stale.delete(oldest);
      reportError(new StaleKeysOverflowError(maxStaleKeys));
    }
    scheduleRepair();
  }

  function scheduleRepair(): void {
    if (closed || repairTimer || stale.size === 0) {
      return;
    }
    repairTimer = setTimeout(() => {
      repairTimer = undefined;
      void repairOnce().finally(scheduleRepair);
    }, repairIntervalMs);
    repairTimer.unref();
  }

  /** One pass at a time: deletes stale keys in Redis, oldest first, until a delete fails. */
  function repairOnce(): Promise<void> {
    repairing ??= repairPass().finally(() => {
      repairing = undefined;
    });
    return repairing;
  }

  async function repairPass(): Promise<void> {
    const pass: [string, number][] = [];
    for (const entry of stale) {
      if (pass.length === REPAIR_PASS_MOST) {
        break;
      }
      pass.push(entry);
    }
    const repaired: string[] = [];
    try {
      for (let start = 0; start < pass.length; start += REPAIR_BATCH) {
        const batch = pass.slice(start, start + REPAIR_BATCH);
        const results = await Promise.allSettled(batch.map(([key]) => store.remove(key)));
        let firstFailure: PromiseRejectedResult | undefined;
        batch.forEach(([key, mark], index) => {
          const result = results[index];
          if (result?.status === 'rejected') {
            firstFailure ??= result;
          } else if (stale.get(key) === mark) {
            // A key marked again meanwhile (another failed write) stays for the next pass.
            stale.delete(key);
            staleEpoch += 1;
            repaired.push(key);
          }
        });
        if (firstFailure) {
          reportError(firstFailure.reason);
          return;
        }
      }
    } finally {
      // Left in the journal when this fails: whoever reads it deletes the entry again, which is harmless.
      if (repaired.length > 0) {
        await options.journal?.forget(repaired).catch(reportError);
      }
    }
  }

  /** Takes in the journal's keys: reads of them skip Redis until the repair has deleted their entries. */
  async function adoptJournal(): Promise<void> {
    if (!options.journal) {
      return;
    }
    for (const key of await options.journal.read(maxStaleKeys)) {
      if (!stale.has(key)) {
        holdStale(key);
      }
    }
  }

  let journalTimer: NodeJS.Timeout | undefined;
  function pollJournal(): void {
    if (closed || !options.journal) {
      return;
    }
    journalTimer = setTimeout(() => {
      void adoptJournal()
        .catch(reportError)
        .finally(pollJournal);
    }, options.journalPollMs ?? 5_000);
    journalTimer.unref();
  }

  /** Writes a value; throws on any failure (encoding included). */
  async function put<T>(key: string, codec: CacheCodec<T>, ttlSeconds: number, entry: Versioned<T>): Promise<void> {
    const framed = frame(entry.version, codec.encode(entry.value));
    await store.writeIfNewer(key, framed, ttlSeconds);
  }

  return {
    async getOrLoad(key, codec, ttlSeconds, load) {
      const bypass = stale.has(key);
      if (!bypass) {
        try {
          const cached = await store.read(key);
          if (cached && cached.length >= VERSION_WIDTH) {
            const value = codec.decode(cached.subarray(VERSION_WIDTH));
            options.onLookup?.(key, true);
            return value;
          }
        } catch (error) {
          reportError(error);
        }
      }
      options.onLookup?.(key, false);
      const joined = inflight.get(key) as Promise<Versioned<Awaited<ReturnType<typeof codec.decode>>> | undefined> | undefined;
      if (joined) {
        return (await joined)?.value;
      }
      const epochAtLoad = staleEpoch;
      const pending = load();
      inflight.set(key, pending);
      try {
        const loaded = await pending;
        // A reader's fill after a miss: failing it leaves nothing wrong behind, so it is only reported.
        if (loaded && !bypass && staleEpoch === epochAtLoad && !stale.has(key)) {
          put(key, codec, ttlSeconds, loaded).catch(reportError);
        }
        return loaded?.value;
      } finally {
        // Only callers that arrived while this load ran share its result.
        if (inflight.get(key) === pending) {
          inflight.delete(key);
        }
      }
    },
    async store(key, codec, ttlSeconds, entry) {
      // A load that began before this write must not serve readers arriving after it.
      inflight.delete(key);
      try {
        await put(key, codec, ttlSeconds, entry);
      } catch (error) {
        reportError(error);
        markStale(key);
      }
    },
    async invalidate(key) {
      inflight.delete(key);
      try {
        await store.remove(key);
      } catch (error) {
        reportError(error);
        markStale(key);
      }
    },
    async restoreStale() {
      await adoptJournal();
      clearTimeout(journalTimer);
      pollJournal();
    },
    async close() {
      closed = true;
      clearTimeout(journalTimer);
      clearTimeout(repairTimer);
      repairTimer = undefined;
      await repairOnce();
    },
  };
}
