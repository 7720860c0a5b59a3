import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';

/** What the global setup found, inside a test file. */
export function testServices(): { postgresUrl: string; redisUrl: string; templateDatabase: string; redisClusterNodes?: readonly string[] } {
  const redisClusterNodes = inject('redisClusterNodes');
  return {
    postgresUrl: inject('postgresUrl'),
    redisUrl: inject('redisUrl'),
    templateDatabase: inject('templateDatabase'),
    // In the redis-cluster project the files' Redis is the cluster: clients connect to it instead of redisUrl.
    ...(redisClusterNodes ? { redisClusterNodes } : {}),
  };
}

/**
 * The Redis a test file's clients should use, as createRedisClient takes it:
 * the project's Redis Cluster in the redis-cluster project, else the server.
 */
export function testRedisTarget(): { readonly url: string } | { readonly clusterNodes: readonly string[] } {
  const { redisUrl, redisClusterNodes } = testServices();
  return redisClusterNodes ? { clusterNodes: redisClusterNodes } : { url: redisUrl };
}

/** A Redis key prefix of its own for a test file, so files share the server without sharing keys. */
export function uniqueKeyPrefix(): string {
  return `test:${randomBytes(6).toString('hex')}:`;
}
