import type { CircuitBreaker } from './circuitBreaker.js';
import type { RedisClient } from './createRedisClient.js';

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
  /** Shared with the other users of this Redis client, so one failure signal serves all. */
  readonly breaker: CircuitBreaker;
  /** Told when Redis misbehaves; the request itself goes on without the cache. */
  readonly onError?: (error: unknown) => void;
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
}

/** Entries are a fixed-width decimal version, then the encoded value. */
const VERSION_WIDTH = 16;

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

/** Cache-aside over Redis, with single-flight loads and version-guarded writes. */
export function createCache(options: CacheOptions): Cache {
  const { redis, breaker } = options;
  const inflight = new Map<string, Promise<Versioned<unknown> | undefined>>();
  const reportError = (error: unknown) => options.onError?.(error);

  async function store<T>(key: string, codec: CacheCodec<T>, ttlSeconds: number, entry: Versioned<T>): Promise<void> {
    const framed = frame(entry.version, codec.encode(entry.value));
    try {
      await breaker.run(() => redis.eval(STORE_IF_NEWER, 1, key, framed, ttlSeconds));
    } catch (error) {
      reportError(error);
    }
  }

  return {
    async getOrLoad(key, codec, ttlSeconds, load) {
      try {
        const cached = await breaker.run(() => redis.getBuffer(key));
        if (cached && cached.length >= VERSION_WIDTH) {
          return codec.decode(cached.subarray(VERSION_WIDTH));
        }
      } catch (error) {
        reportError(error);
      }
      const joined = inflight.get(key) as Promise<Versioned<Awaited<ReturnType<typeof codec.decode>>> | undefined> | undefined;
      if (joined) {
        return (await joined)?.value;
      }
      const pending = load();
      inflight.set(key, pending);
      try {
        const loaded = await pending;
        if (loaded) {
          void store(key, codec, ttlSeconds, loaded);
        }
        return loaded?.value;
      } finally {
        // Only callers that arrived while this load ran share its result.
        if (inflight.get(key) === pending) {
          inflight.delete(key);
        }
      }
    },
    store(key, codec, ttlSeconds, entry) {
      // A load that began before this write must not serve readers arriving after it.
      inflight.delete(key);
      return store(key, codec, ttlSeconds, entry);
    },
    async invalidate(key) {
      inflight.delete(key);
      try {
        await breaker.run(() => redis.del(key));
      } catch (error) {
        reportError(error);
      }
    },
  };
}
