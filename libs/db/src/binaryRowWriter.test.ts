import { createTestDatabase, testServices, type TestDatabase } from '@clinical/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BinaryRowWriter } from './binaryRowWriter.js';
import { copyRows } from './copyRows.js';

let database: TestDatabase;
let admin: pg.Client;

beforeAll(async () => {
  const { postgresUrl, templateDatabase } = testServices();
  database = await createTestDatabase(postgresUrl, templateDatabase);
  admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  await admin.query(`CREATE TABLE binary_values (
    id int4 PRIMARY KEY, key uuid, day date, at timestamptz, amount numeric, tenths numeric(4,1), document jsonb)`);
});

afterAll(async () => {
  await admin?.end();
  await database?.drop();
});

const COLUMNS = ['id', 'key', 'day', 'at', 'amount', 'tenths', 'document'];

describe('BinaryRowWriter', () => {
  it('writes values PostgreSQL reads back as they were, in its binary send format', async () => {
    const writer = new BinaryRowWriter(16);
    const at = (iso: string) => Date.parse(iso);
    const day = (iso: string) => Date.parse(iso) / 86_400_000;
    writer
      .row(7)
      .int4(1)
      .uuid('5E0F6C1A-8B3D-4D7E-9F21-0A1B2C3D4E5F')
      .date(day('2024-02-29'))
      .timestamptz(at('2024-03-01T09:00:00.123Z'))
      .numeric(366, 1)
      .numeric(370, 1)
      .jsonb(JSON.stringify({ model: 'BP-200', note: 'naïve ☃ 𝄞 "q" \\ \t' }));
    writer.row(7).int4(-2_147_483_648).uuidBytes(Buffer.alloc(16, 0xff)).date(day('1969-12-31')).timestamptz(at('1960-07-04T00:00:00.999Z'));
    writer.numeric(-1250, 2).numeric(-5, 1).jsonb('[]');
    writer.row(7).int4(2_147_483_647).null().null().timestamptz(at('2000-01-01T00:00:00Z')).numeric(0, 3).null().null();
    writer.row(7).int4(4).null().date(day('2000-01-01')).timestamptz(at('1999-12-31T23:59:59.999Z'));
    writer.numeric(123_456_789_012, 4).numeric(450, 1).jsonb('{"deep": {"deeper": [1, 2.5, null, true]}}');
    writer.row(7).int4(5).null().null().null().numeric(100_000_005, 1).numeric(10, 1).null();
    expect(writer.rowCount).toBe(5);
    expect(await copyRows(admin, 'binary_values', COLUMNS, writer.bytes(), { format: 'binary' })).toBe(5);

    const { rows } = await admin.query(
      `SELECT id, key::text, day::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS at,
              amount::text, tenths::text, document
         FROM binary_values ORDER BY id`,
    );
    expect(rows).toEqual([
      { id: -2_147_483_648, key: 'ffffffff-ffff-ffff-ffff-ffffffffffff', day: '1969-12-31', at: '1960-07-04T00:00:00.999000', amount: '-12.50', tenths: '-0.5', document: [] },
      { id: 1, key: '5e0f6c1a-8b3d-4d7e-9f21-0a1b2c3d4e5f', day: '2024-02-29', at: '2024-03-01T09:00:00.123000', amount: '36.6', tenths: '37.0', document: { model: 'BP-200', note: 'naïve ☃ 𝄞 "q" \\ \t' } },
      { id: 4, key: null, day: '2000-01-01', at: '1999-12-31T23:59:59.999000', amount: '12345678.9012', tenths: '45.0', document: { deep: { deeper: [1, 2.5, null, true] } } },
      { id: 5, key: null, day: null, at: null, amount: '10000000.5', tenths: '1.0', document: null },
      { id: 2_147_483_647, key: null, day: null, at: '2000-01-01T00:00:00.000000', amount: '0.000', tenths: null, document: null },
    ]);
  });

  it('writes each numeric as numeric_send writes the stored value (no leading or trailing zero groups)', async () => {
    const cases: [number, number][] = [[366, 1], [370, 1], [5, 1], [-1250, 2], [0, 0], [10_000, 0], [100_000_005, 1], [123_456_789_012, 4]];
    for (const [unscaled, scale] of cases) {
      const writer = new BinaryRowWriter();
      writer.row(1).numeric(unscaled, scale);
      // The field's bytes after the row's field count and the field's length.
      const sent = writer.bytes().subarray(6);
      const digits = String(Math.abs(unscaled)).padStart(scale + 1, '0');
      const text = `${unscaled < 0 ? '-' : ''}${digits.slice(0, digits.length - scale)}${scale > 0 ? `.${digits.slice(-scale)}` : ''}`;
      const { rows } = await admin.query<{ sent: Buffer }>('SELECT numeric_send($1::numeric) AS sent', [text]);
      expect(sent.toString('hex'), `${unscaled} x 10^-${scale}`).toBe(rows[0]!.sent.toString('hex'));
    }
  });

  it('refuses values its types cannot hold before writing anything', () => {
    const writer = new BinaryRowWriter();
    expect(() => writer.uuid('not-a-uuid')).toThrow(RangeError);
    expect(() => writer.uuidBytes(Buffer.alloc(15))).toThrow(RangeError);
    expect(() => writer.int4(2 ** 31)).toThrow(RangeError);
    expect(() => writer.int4(1.5)).toThrow(RangeError);
    expect(() => writer.timestamptz(0.5)).toThrow(RangeError);
    expect(() => writer.timestamptz(8.64e15)).toThrow(RangeError);
    expect(() => writer.numeric(2 ** 53, 0)).toThrow(RangeError);
    expect(() => writer.numeric(1, -1)).toThrow(RangeError);
    expect(() => writer.row(70_000)).toThrow(RangeError);
    expect(writer.byteLength).toBe(0);
  });
});
