import { Redis } from 'ioredis';
import type { RedisClient } from './createRedisClient.js';

/**
 * Copies of Redis values kept in the process, coherent through Redis's own
 * client-side caching: reads go through a connection with `CLIENT TRACKING
 * ON REDIRECT` to a second connection subscribed to `__redis__:invalidate`,
 * so Redis tells this process of every change to a key it read (a write by
 * any process, an expiry, an eviction, a flush) and the copy is dropped.
 * A hot key then costs no round trip at all.
 *
 * Copies are kept only while both connections are up and tracking is on;
 * when either drops, every copy is dropped and reads go to Redis until
 * tracking is on again. A read whose key was invalidated while its GET was in
 * flight is answered but not kept (it may be the value from before the
 * change). A change made through another connection of this process is
 * dropped here at once by `forget`. Copies also age out after `maxAgeMs`, a
 * backstop only.
 *
 * A copy is served only after a barrier: a PING on the invalidation
 * connection, sent after the read arrived, has been answered. Redis queues a
 * key's invalidation on that connection while it executes the write, before
 * it answers the writer, so every invalidation of a write acknowledged
 * before the read began has been heard by then: a write answered to anyone
 * (a revocation, an update through another replica) is never read stale
 * here. All reads waiting in one turn of the event loop share one PING.
 */
export interface NearCache {
  /** The process's copy of `key` (null: the key is absent) as it is now, or undefined when it holds none: to inspect, not to serve. */
  peek(key: string): Buffer | null | undefined;
  /** The value of `key`: the process's copy when it holds one (after the barrier), else Redis's (kept when it may be). */
  getBuffer(key: string): Promise<Buffer | null>;
  /** Drops the copy of `key` (call after writing it through another connection). */
  forget(key: string): void;
  /** Whether copies are being kept: both connections up and tracking on. */
  isTracking(): boolean;
  close(): void;
}

export interface NearCacheOptions {
  /** The client whose server and settings (key prefix, timeouts, TLS) the near cache's two connections copy. */
  readonly redis: RedisClient;
  /** Copies kept at most (the oldest goes first). Default 50,000. */
  readonly maxEntries?: number;
  /** A copy older than this is read again. Default 60,000 ms. */
  readonly maxAgeMs?: number;
  /** Told when tracking cannot be turned on (it is retried on the next reconnect). */
  readonly onError?: (error: unknown) => void;
  readonly now?: () => number;
}

const INVALIDATIONS = '__redis__:invalidate';

interface Copy {
  readonly value: Buffer | null;
  readonly storedAt: number;
}

/**
 * A near cache over a single Redis server; none over a cluster (each of its
 * nodes would need tracking of its own), whose reads then all go to Redis.
 */
export function createNearCache(options: NearCacheOptions): NearCache | undefined {
  return options.redis instanceof Redis ? nearCacheOver(options.redis, options) : undefined;
}

function nearCacheOver(redis: Redis, options: NearCacheOptions): NearCache {
  const maxEntries = options.maxEntries ?? 50_000;
  const maxAgeMs = options.maxAgeMs ?? 60_000;
  const now = options.now ?? Date.now;
  const prefix = redis.options.keyPrefix ?? '';
  // Named, so that CLIENT LIST tells what they are (and which key space they serve).
  const name = (role: string) => `near-cache-${role}-${prefix}`.replace(/[^\w:.-]/g, '_');
  const reads = redis.duplicate({ connectionName: name('reads') });
  // RESP2: Redis tells a RESP3 subscriber with an `invalidate` push that ioredis does not surface; a RESP2
  // one gets a pub/sub message on the invalidation channel.
  const invalidations = redis.duplicate({ autoResubscribe: false, connectionName: name('invalidations'), protocol: 2 });
  const copies = new Map<string, Copy>();
  /** Keys with a GET in flight, each with the read's ticket: an invalidation meanwhile takes the ticket away. */
  const fetching = new Map<string, number>();
  let tickets = 0;
  /** Moves whenever tracking stops or starts: a GET sent before it moved is not kept. */
  let epoch = 0;
  let tracking = false;
  let subscriberId: number | undefined;
  let closed = false;

  const report = (error: unknown) => {
    try {
      options.onError?.(error);
    } catch {
      // A failing reporter must not break the cache.
    }
  };
  const dropAll = () => {
    epoch += 1;
    copies.clear();
    fetching.clear();
  };
  const stopTracking = () => {
    tracking = false;
    dropAll();
  };

  async function startTracking(): Promise<void> {
    const id = subscriberId;
    if (closed || id === undefined || reads.status !== 'ready') {
      return;
    }
    const startedAt = epoch;
    try {
      await reads.client('TRACKING', 'ON', 'REDIRECT', String(id));
    } catch (error) {
      report(error);
      return;
    }
    // Nothing dropped tracking meanwhile (a reconnect of either side), and it still redirects to the live subscriber.
    if (startedAt === epoch && id === subscriberId && reads.status === 'ready') {
      dropAll();
      tracking = true;
    }
  }

  invalidations.on('ready', () => {
    stopTracking();
    subscriberId = undefined;
    void (async () => {
      const id = Number(await invalidations.client('ID'));
      await invalidations.subscribe(INVALIDATIONS);
      subscriberId = id;
      await startTracking();
    })().catch(report);
  });
  invalidations.on('messageBuffer', (channel: Buffer, keys: Buffer[] | Buffer | null) => {
    if (channel.toString() !== INVALIDATIONS) {
      return;
    }
    if (!Array.isArray(keys)) {
      // A flush of the whole database comes as a null.
      dropAll();
      return;
    }
    for (const raw of keys) {
      const key = raw.toString();
      if (key.startsWith(prefix)) {
        const unprefixed = key.slice(prefix.length);
        copies.delete(unprefixed);
        fetching.delete(unprefixed);
      }
    }
  });
  for (const connection of [reads, invalidations]) {
    connection.on('close', () => {
      stopTracking();
      if (connection === invalidations) {
        subscriberId = undefined;
      }
    });
    // Errors reach the service through its main client; these two only stop tracking (on close).
    connection.on('error', () => {});
  }
  reads.on('ready', () => {
    stopTracking();
    void startTracking();
  });

  function peek(key: string): Buffer | null | undefined {
    if (!tracking) {
      return undefined;
    }
    const copy = copies.get(key);
    return copy && now() - copy.storedAt < maxAgeMs ? copy.value : undefined;
  }

  /** The next barrier not yet sent: reads that join it before it goes share it. */
  let waiting: Promise<unknown> | undefined;
  function barrier(): Promise<unknown> {
    waiting ??= new Promise((resolve, reject) => {
      // After this turn's I/O callbacks: every read that arrived in them joins this one PING.
      setImmediate(() => {
        waiting = undefined;
        invalidations.ping().then(resolve, reject);
      });
    });
    return waiting;
  }

  return {
    peek,
    async getBuffer(key) {
      if (peek(key) !== undefined) {
        const passed = await barrier().then(
          () => true,
          () => false,
        );
        const held = passed ? peek(key) : undefined;
        if (held !== undefined) {
          return held;
        }
      }
      tickets += 1;
      const ticket = tickets;
      const epochAtRead = epoch;
      fetching.set(key, ticket);
      try {
        // Until its own connection is up (at start), the read goes through the service's client, and is not kept.
        const value = await (reads.status === 'ready' ? reads : redis).getBuffer(key);
        if (tracking && epoch === epochAtRead && fetching.get(key) === ticket) {
          copies.delete(key);
          copies.set(key, { value, storedAt: now() });
          if (copies.size > maxEntries) {
            copies.delete(copies.keys().next().value as string);
          }
        }
        return value;
      } finally {
        if (fetching.get(key) === ticket) {
          fetching.delete(key);
        }
      }
    },
    forget(key) {
      copies.delete(key);
      fetching.delete(key);
    },
    isTracking: () => tracking,
    close() {
      closed = true;
      stopTracking();
      reads.disconnect();
      invalidations.disconnect();
    },
  };
}
