import { InvalidArgumentError } from '@clinical/errors';
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

  it('leaves a server fault unmapped', async () => {
    expect(mapDatabaseError(await failure(pool.query(sql.unsafe`SELECT * FROM no_such_table`)))).toBeUndefined();
  });
});
