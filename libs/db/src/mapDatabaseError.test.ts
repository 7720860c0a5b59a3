import { connect, createServer, type Server, type Socket } from 'node:net';
import { InvalidArgumentError, UnavailableError } from '@clinical/errors';
import { createTestDatabase, testServices, type TestDatabase } from '@clinical/testing';
import type { DatabasePool } from 'slonik';
import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabasePool } from './createDatabasePool.js';
import { mapDatabaseError } from './mapDatabaseError.js';

let database: TestDatabase;
let pool: DatabasePool;

beforeAll(async () => {
  const { postgresUrl, templateDatabase } = testServices();
  database = await createTestDatabase(postgresUrl, templateDatabase);
  pool = await createDatabasePool({ connectionUri: database.url });
});

afterAll(async () => {
  await pool?.end();
  await database?.drop();
});

async function failure(query: Promise<unknown>): Promise<unknown> {
  return query.then(
    () => undefined,
    (error: unknown) => error,
  );
}

describe('mapDatabaseError', () => {
  it('maps a JSON document holding NaN to INVALID_ARGUMENT, not a server fault', async () => {
    // Slonik refuses it while building the query, before anything is sent.
    const error = await failure(Promise.resolve().then(() => pool.query(sql.unsafe`SELECT ${sql.jsonb({ value: Number.NaN } as never)}::jsonb`)));
    expect(mapDatabaseError(error)).toBeInstanceOf(InvalidArgumentError);
  });

  it('maps a value of the wrong type and an out-of-range number to INVALID_ARGUMENT', async () => {
    expect(mapDatabaseError(await failure(pool.query(sql.unsafe`SELECT ${'not-a-uuid'}::uuid`)))).toBeInstanceOf(InvalidArgumentError);
    expect(mapDatabaseError(await failure(pool.query(sql.unsafe`SELECT ${'99999999999'}::int4`)))).toBeInstanceOf(InvalidArgumentError);
  });

  it('maps a write refused by a read-only database (25006) to UNAVAILABLE: retried later, not a server fault', async () => {
    // What a write meets while an operator holds the database read-only (default_transaction_read_only) or a failover is under way.
    const error = await failure(
      pool.transaction(async (transaction) => {
        await transaction.query(sql.unsafe`SET TRANSACTION READ ONLY`);
        await transaction.query(sql.unsafe`UPDATE sessions SET last_seen_at = now() WHERE false`);
      }),
    );
    expect(mapDatabaseError(error)).toBeInstanceOf(UnavailableError);
  });

  it('maps a connection reset under a statement (ECONNRESET, no SQLSTATE) to UNAVAILABLE, not a server fault', async () => {
    // What a server that dies without closing its sessions (an immediate shutdown, a crash) or a network path
    // that resets them leaves the driver with: a proxy in front of PostgreSQL resets the connections it carries.
    const carried: Socket[] = [];
    const proxy: Server = createServer((client) => {
      const target = new URL(database.url);
      const upstream = connect(Number(target.port), target.hostname);
      client.pipe(upstream).pipe(client);
      for (const [socket, other] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        socket.on('error', () => {});
        socket.on('close', () => other.destroy());
      }
      carried.push(client);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const viaProxy = new URL(database.url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String((proxy.address() as { port: number }).port);
    const resetPool = await createDatabasePool({ connectionUri: viaProxy.toString() });
    try {
      await resetPool.query(sql.unsafe`SELECT 1`);
      const running = failure(resetPool.query(sql.unsafe`SELECT pg_sleep(5)`));
      // The statement is on the wire once the proxy carries a connection that is in use.
      for (const socket of carried.splice(0)) {
        socket.resetAndDestroy();
      }
      const error = await running;
      expect((error as { code?: string }).code).toBe('ECONNRESET');
      expect(mapDatabaseError(error)).toBeInstanceOf(UnavailableError);
    } finally {
      await resetPool.end().catch(() => undefined);
      proxy.close();
    }
  });

  it('leaves a server fault unmapped', async () => {
    expect(mapDatabaseError(await failure(pool.query(sql.unsafe`SELECT * FROM no_such_table`)))).toBeUndefined();
  });
});
