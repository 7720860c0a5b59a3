import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';

/** What the global setup found, inside a test file. */
export function testServices(): { postgresUrl: string; redisUrl: string; templateDatabase: string } {
  return {
    postgresUrl: inject('postgresUrl'),
    redisUrl: inject('redisUrl'),
    templateDatabase: inject('templateDatabase'),
  };
}

/** A Redis key prefix of its own for a test file, so files share the server without sharing keys. */
export function uniqueKeyPrefix(): string {
  return `test:${randomBytes(6).toString('hex')}:`;
}
