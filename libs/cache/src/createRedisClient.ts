import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis } from 'ioredis';

export type RedisClient = Redis | Cluster;

export interface RedisClientOptions {
  /** redis:// URL of a single node. Ignored when clusterNodes is given. */
  readonly url?: string;
  /** host:port of cluster seed nodes. */
  readonly clusterNodes?: readonly string[];
  /** Prefix of every key, so that environments and tests can share a server. */
  readonly keyPrefix?: string;
  /** A command not answered within this time fails (and the caller falls back). */
  readonly commandTimeoutMs?: number;
  /** TLS to every node (a rediss:// URL asks for it too, with the system's CAs): CA, client certificate. */
  readonly tls?: ConnectionOptions;
}

/**
 * An ioredis client that fails fast rather than queueing: with the offline
 * queue off, commands issued while disconnected reject at once, so a dead
 * Redis costs callers no waiting; it keeps reconnecting in the background.
 */
export function createRedisClient(options: RedisClientOptions): RedisClient {
  const common = {
    keyPrefix: options.keyPrefix ?? '',
    commandTimeout: options.commandTimeoutMs ?? 250,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 2_000,
    // Commands issued in the same tick go out in one write: under load that
    // turns many small writes (a syscall each) into a few.
    enableAutoPipelining: true,
    retryStrategy: (attempt: number) => Math.min(100 * 2 ** attempt, 2_000),
    ...(options.tls ? { tls: options.tls } : {}),
  };
  if (options.clusterNodes && options.clusterNodes.length > 0) {
    return new Cluster(
      options.clusterNodes.map((node) => {
        const [host, port] = node.split(':');
        return { host: host ?? '127.0.0.1', port: Number(port ?? 6379) };
      }),
      { keyPrefix: common.keyPrefix, enableOfflineQueue: false, enableAutoPipelining: true, redisOptions: common },
    );
  }
  if (!options.url) {
    throw new Error('createRedisClient: url or clusterNodes is required');
  }
  return new Redis(options.url, common);
}

/**
 * Waits until the client is connected, at most `timeoutMs`. Commands fail
 * fast while disconnected, so a service waits here once at start; if Redis
 * is still not there it starts anyway and serves without it.
 * @returns whether Redis is ready.
 */
export async function waitForRedis(redis: RedisClient, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') {
    return true;
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      resolve(false);
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve(true);
    };
    redis.once('ready', onReady);
  });
}
