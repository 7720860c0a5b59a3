import { eventually, startPostgresCluster, type PostgresCluster } from '@clinical/testing';
import { sql, type DatabasePool } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createDatabasePool } from './createDatabasePool.js';
import { createReplicaReads, isConsistencyToken, type ReplicaReads } from './replicaReads.js';

/** A PostgreSQL primary of its own and a real streaming standby of it (pg_basebackup -R). */
let primary: PostgresCluster;
let standby: PostgresCluster;
let primaryPool: DatabasePool;
let reads: ReplicaReads;
const errors: unknown[] = [];
const MAX_LAG_MS = 400;

const counted = z.object({ value: z.number().nullable() });
/** The greatest value written so far, as `pool` sees it, and which pool answered. */
const latestOn = (pool: DatabasePool) =>
  pool.one(sql.type(counted)`SELECT max(value)::int AS value FROM written`).then(({ value }) => ({ value, onReplica: pool !== primaryPool }));

async function write(value: number): Promise<string> {
  await primaryPool.query(sql.unsafe`INSERT INTO written (value) VALUES (${value})`);
  return reads.tokenAfterWrite();
}

beforeAll(async () => {
  primary = await startPostgresCluster();
  primaryPool = await createDatabasePool({ connectionUri: primary.url() });
  await primaryPool.query(sql.unsafe`CREATE TABLE written (value int NOT NULL)`);
  standby = await startPostgresCluster({ standbyOf: primary });
  reads = createReplicaReads({
    primary: primaryPool,
    replicas: [await createDatabasePool({ connectionUri: standby.url(), connectionTimeoutMs: 1_000 })],
    maxLagMs: MAX_LAG_MS,
    tokenWaitMs: 1_000,
    onError: (error) => errors.push(error),
  });
}, 120_000);

afterAll(async () => {
  await reads?.close();
  await primaryPool?.end();
  await standby?.remove();
  await primary?.remove();
});

describe('reads over a streaming replica', () => {
  it('never return less than the caller’s own write when they carry its token, and mostly come from the replica', async () => {
    let fromReplica = 0;
    for (let value = 1; value <= 60; value += 1) {
      const token = await write(value);
      expect(isConsistencyToken(token)).toBe(true);
      const seen = await reads.read(token, latestOn);
      expect(seen.value).toBe(value);
      fromReplica += seen.onReplica ? 1 : 0;
    }
    expect(fromReplica).toBeGreaterThan(30);
  });

  it('without a token, go to the replica while its replay is within the lag bound', async () => {
    await write(100);
    await eventually(async () => ((await reads.read(undefined, latestOn)).onReplica ? true : undefined), 10_000, 'a read on the replica');
  });

  it('go to the primary when the replica has stopped replaying: with a token once the wait is over, without one past the lag bound', async () => {
    const admin = await createDatabasePool({ connectionUri: standby.url() });
    try {
      await admin.query(sql.unsafe`SELECT pg_wal_replay_pause()`);
      const token = await write(200);
      expect(await reads.read(token, latestOn)).toEqual({ value: 200, onReplica: false });
      // Commits older than the bound are not on the replica: reads without a token leave it too.
      await eventually(async () => ((await reads.read(undefined, latestOn)).onReplica ? undefined : true), 10_000, 'reads to leave the paused replica');
      expect((await reads.read(undefined, latestOn)).value).toBe(200);
      await admin.query(sql.unsafe`SELECT pg_wal_replay_resume()`);
      await eventually(async () => ((await reads.read(undefined, latestOn)).onReplica ? true : undefined), 10_000, 'reads back on the replica');
    } finally {
      await admin.end();
    }
  });

  it('fall back to the primary, without a failed read, when the replica is killed', async () => {
    const token = await write(300);
    await standby.stop('immediate');
    for (let attempt = 0; attempt < 20; attempt += 1) {
      expect(await reads.read(token, latestOn)).toEqual({ value: 300, onReplica: false });
      expect((await reads.read(undefined, latestOn)).value).toBe(300);
    }
  });
});
