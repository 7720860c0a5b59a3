import { LRUCache } from 'lru-cache';
import { createCacheOver, VERSION_WIDTH, type Cache, type CacheOptions, type CacheStore } from './createCache.js';

export interface MemoryCacheOptions extends Pick<CacheOptions, 'onError' | 'onLookup'> {
  /** Most bytes of encoded values held; the least recently used go first. Default 64 MiB. */
  readonly maxBytes?: number;
}

/** Framed entries in this process, bounded in bytes, with the same version guard as the Redis script. */
function memoryStore(maxBytes: number): CacheStore {
  const entries = new LRUCache<string, Buffer>({
    maxSize: maxBytes,
    sizeCalculation: (framed) => Math.max(framed.length - VERSION_WIDTH, 1),
  });
  const versionOf = (framed: Buffer) => framed.subarray(0, VERSION_WIDTH);
  return {
    async read(key) {
      return entries.get(key) ?? null;
    },
    async writeIfNewer(key, framed, ttlSeconds) {
      const current = entries.get(key);
      if (!current || versionOf(current).compare(versionOf(framed)) < 0) {
        entries.set(key, framed, { ttl: ttlSeconds * 1_000 });
      }
    },
    async remove(key) {
      entries.delete(key);
    },
  };
}

/**
 * The cache of a process that has no Redis (STATE_STORE=memory, one replica
 * per service, for development): createCache's logic (single-flight loads,
 * version-guarded writes, TTL) over this process's memory. Values are kept
 * encoded, so every reader of a cached entry decodes its own copy.
 */
export function createMemoryCache(options: MemoryCacheOptions = {}): Cache {
  return createCacheOver(memoryStore(options.maxBytes ?? 64 * 1024 * 1024), options);
}
