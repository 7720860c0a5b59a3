import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { CacheCodec } from './createCache.js';
import { createMemoryCache } from './createMemoryCache.js';

const text: CacheCodec<string> = {
  encode: (value) => Buffer.from(value),
  decode: (bytes) => Buffer.from(bytes).toString(),
};

/** A loader that counts its calls and answers `value` at `version`. */
function loaderOf(value: string, version: number) {
  const loader = async () => {
    loader.calls += 1;
    return { value, version };
  };
  loader.calls = 0;
  return loader;
}

describe('createMemoryCache', () => {
  it('loads a key once and serves it from memory after', async () => {
    const cache = createMemoryCache();
    const load = loaderOf('v1', 1);
    expect(await cache.getOrLoad('k', text, 60, load)).toBe('v1');
    expect(await cache.getOrLoad('k', text, 60, load)).toBe('v1');
    expect(load.calls).toBe(1);
  });

  it('makes one load of a key however many callers miss together', async () => {
    const cache = createMemoryCache();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let calls = 0;
    const load = async () => {
      calls += 1;
      await gate;
      return { value: 'shared', version: 1 };
    };
    const readers = Array.from({ length: 10 }, () => cache.getOrLoad('k', text, 60, load));
    release();
    expect(await Promise.all(readers)).toEqual(Array(10).fill('shared'));
    expect(calls).toBe(1);
  });

  it('lets only a newer version replace an entry, so a slow reader cannot put back an old one', async () => {
    const cache = createMemoryCache();
    await cache.store('k', text, 60, { value: 'v2', version: 2 });
    await cache.store('k', text, 60, { value: 'v1', version: 1 });
    expect(await cache.getOrLoad('k', text, 60, loaderOf('from the database', 1))).toBe('v2');
    await cache.store('k', text, 60, { value: 'v3', version: 3 });
    expect(await cache.getOrLoad('k', text, 60, loaderOf('from the database', 1))).toBe('v3');
  });

  it('keeps a newer version stored while an older load was running', async () => {
    const cache = createMemoryCache();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const slowRead = cache.getOrLoad('k', text, 60, async () => {
      await gate;
      return { value: 'v1 read before the write', version: 1 };
    });
    await cache.store('k', text, 60, { value: 'v2 written', version: 2 });
    release();
    expect(await slowRead).toBe('v1 read before the write');
    expect(await cache.getOrLoad('k', text, 60, loaderOf('from the database', 2))).toBe('v2 written');
  });

  it('loads again after an invalidation and after the TTL', async () => {
    const cache = createMemoryCache();
    await cache.store('k', text, 1, { value: 'v1', version: 1 });
    await cache.invalidate('k');
    const load = loaderOf('reloaded', 1);
    expect(await cache.getOrLoad('k', text, 1, load)).toBe('reloaded');
    await sleep(1_100);
    expect(await cache.getOrLoad('k', text, 1, load)).toBe('reloaded');
    expect(load.calls).toBe(2);
  });

  it('gives each reader its own copy of the value', async () => {
    const cache = createMemoryCache();
    const json: CacheCodec<{ n: number }> = {
      encode: (value) => Buffer.from(JSON.stringify(value)),
      decode: (bytes) => JSON.parse(Buffer.from(bytes).toString()) as { n: number },
    };
    await cache.store('k', json, 60, { value: { n: 1 }, version: 1 });
    const first = await cache.getOrLoad('k', json, 60, async () => undefined);
    first!.n = 99;
    expect(await cache.getOrLoad('k', json, 60, async () => undefined)).toEqual({ n: 1 });
  });

  it('drops the entry a value it cannot encode was to replace, and reports it', async () => {
    const reported: unknown[] = [];
    const cache = createMemoryCache({ onError: (error) => reported.push(error) });
    const picky: CacheCodec<string> = {
      ...text,
      encode: (value) => {
        if (value === 'unencodable') {
          throw new Error('cannot encode');
        }
        return text.encode(value);
      },
    };
    await cache.store('k', picky, 60, { value: 'v1', version: 1 });
    await cache.store('k', picky, 60, { value: 'unencodable', version: 2 });
    expect(reported).toHaveLength(1);
    expect(await cache.getOrLoad('k', picky, 60, loaderOf('v2 from the database', 2))).toBe('v2 from the database');
  });

  it('holds at most maxBytes, forgetting the least recently used', async () => {
    const cache = createMemoryCache({ maxBytes: 10 });
    await cache.store('a', text, 60, { value: 'aaaaa', version: 1 });
    await cache.store('b', text, 60, { value: 'bbbbb', version: 1 });
    await cache.store('c', text, 60, { value: 'ccccc', version: 1 });
    const load = loaderOf('AAAAA', 1);
    expect(await cache.getOrLoad('a', text, 60, load)).toBe('AAAAA');
    expect(await cache.getOrLoad('c', text, 60, load)).toBe('ccccc');
    expect(load.calls).toBe(1);
  });
});
