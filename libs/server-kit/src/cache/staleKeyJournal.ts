import type { StaleKeyJournal } from '@clinical/cache';
import { sql, type DatabasePool } from '@clinical/db';
import { z } from 'zod';

/**
 * The cache's stale keys in PostgreSQL (`cache_stale_keys`), shared by every
 * process of every service: a key recorded by one is repaired by whichever
 * reads it next, even after the one that recorded it is gone.
 */
export function createStaleKeyJournal(pool: DatabasePool): StaleKeyJournal {
  return {
    async read(limit) {
      return pool.anyFirst(sql.type(z.object({ key: z.string() }))`SELECT key FROM cache_stale_keys ORDER BY marked_at LIMIT ${limit}`);
    },
    async record(key) {
      await pool.query(sql.type(z.object({}))`
        INSERT INTO cache_stale_keys (key) VALUES (${key}) ON CONFLICT (key) DO UPDATE SET marked_at = now()
      `);
    },
    async forget(keys) {
      await pool.query(sql.type(z.object({}))`DELETE FROM cache_stale_keys WHERE key = ANY(${sql.array(keys, 'text')})`);
    },
  };
}
