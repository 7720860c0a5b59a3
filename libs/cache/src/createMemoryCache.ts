import { LRUCache } from 'lru-cache';
import type { Cache, CacheCodec, Versioned } from './createCache.js';

export interface MemoryCacheOptions {
  /** Most bytes of encoded values held; the least recently used go first. Default 64 MiB. */
  readonly maxBytes?: number;
  /** Told when a value cannot be encoded; the request goes on without the cache. */
  readonly onError?: (error: unknown) => void;
}

interface Entry {
  readonly version: number;
  readonly bytes: Uint8Array;
}

/**
 * The cache of a process that has no Redis (STATE_STORE=memory, one replica
 * per service, for development): the same contract as createCache, held in
 * this process. Values are kept encoded, so every reader of a cached entry
 * decodes its own copy, as it would from Redis (callers that join one load
 * share its value, as with Redis).
 */
export function createMemoryCache(options: MemoryCacheOptions = {}): Cache {
  const entries = new LRUCache<string, Entry>({
    maxSize: options.maxBytes ?? 64 * 1024 * 1024,
    sizeCalculation: (entry) => Math.max(entry.bytes.length, 1),
  });
  const inflight = new Map<string, Promise<unknown>>();

  /**
   * Only a newer version replaces what is held (see Cache.store). A value the
   * codec cannot encode is not cached, and the entry it was to replace goes,
   * as it may be the old record.
   */
  function putIfNewer<T>(key: string, codec: CacheCodec<T>, ttlSeconds: number, entry: Versioned<T>): void {
    const current = entries.get(key);
    if (current && current.version >= entry.version) {
      return;
    }
    let bytes: Uint8Array;
    try {
      bytes = codec.encode(entry.value);
    } catch (error) {
      entries.delete(key);
      options.onError?.(error);
      return;
    }
    entries.set(key, { version: entry.version, bytes }, { ttl: ttlSeconds * 1_000 });
  }

  return {
    async getOrLoad(key, codec, ttlSeconds, load) {
      const cached = entries.get(key);
      if (cached) {
        return codec.decode(cached.bytes);
      }
      const joined = inflight.get(key) as Promise<Awaited<ReturnType<typeof load>>> | undefined;
      if (joined) {
        return (await joined)?.value;
      }
      const pending = load();
      inflight.set(key, pending);
      try {
        const loaded = await pending;
        if (loaded) {
          putIfNewer(key, codec, ttlSeconds, loaded);
        }
        return loaded?.value;
      } finally {
        if (inflight.get(key) === pending) {
          inflight.delete(key);
        }
      }
    },
    async store(key, codec, ttlSeconds, entry) {
      inflight.delete(key);
      putIfNewer(key, codec, ttlSeconds, entry);
    },
    async invalidate(key) {
      inflight.delete(key);
      entries.delete(key);
    },
    async close() {
      entries.clear();
    },
  };
}
