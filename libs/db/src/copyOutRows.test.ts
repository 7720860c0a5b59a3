import { createTestDatabase, testServices, type TestDatabase } from '@clinical/testing';
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyOutRows } from './copyOutRows.js';

let database: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  const { postgresUrl, templateDatabase } = testServices();
  database = await createTestDatabase(postgresUrl, templateDatabase);
  client = new pg.Client({ connectionString: database.url });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await database?.drop();
});

/** Rows of (n int8, label text, blob bytea), as binary COPY of a generate_series. */
const series = (count: number, blobBytes = 0) =>
  `COPY (SELECT g::int8, CASE WHEN g % 3 = 0 THEN NULL ELSE 'row ' || g END, decode(repeat('ab', ${blobBytes}), 'hex')
           FROM generate_series(1, ${count}) AS g) TO STDOUT (FORMAT binary)`;

interface Row {
  n: bigint;
  label: string | null;
  blobBytes: number;
}

const collect = (rows: Row[]) => (buffer: Buffer, starts: Int32Array, lengths: Int32Array) => {
  rows.push({
    n: buffer.readBigInt64BE(starts[0]!),
    label: lengths[1]! < 0 ? null : buffer.toString('utf8', starts[1]!, starts[1]! + lengths[1]!),
    blobBytes: lengths[2]!,
  });
};

describe('copyOutRows', () => {
  it('hands over every row with its fields and NULLs, across the chunks the socket delivers', async () => {
    const rows: Row[] = [];
    const count = await copyOutRows(client, series(50_000), 3, collect(rows));
    expect(count).toBe(50_000);
    expect(rows).toHaveLength(50_000);
    expect(rows[0]).toEqual({ n: 1n, label: 'row 1', blobBytes: 0 });
    expect(rows[2]).toEqual({ n: 3n, label: null, blobBytes: 0 });
    expect(rows.at(-1)).toEqual({ n: 50_000n, label: 'row 50000', blobBytes: 0 });
    expect(rows.every((row, index) => row.n === BigInt(index + 1))).toBe(true);
    // The connection is back to pg: an ordinary query follows.
    expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('hands over rows far bigger than a socket chunk whole', async () => {
    const rows: Row[] = [];
    let blobsIntact = true;
    await copyOutRows(client, series(5, 1_500_000), 3, (buffer, starts, lengths) => {
      collect(rows)(buffer, starts, lengths);
      blobsIntact &&= buffer.subarray(starts[2]!, starts[2]! + lengths[2]!).every((byte) => byte === 0xab);
    });
    expect(rows.map((row) => row.blobBytes)).toEqual([1_500_000, 1_500_000, 1_500_000, 1_500_000, 1_500_000]);
    expect(blobsIntact).toBe(true);
  });

  it('reads an empty result', async () => {
    expect(await copyOutRows(client, series(0), 3, () => expect.unreachable())).toBe(0);
  });

  it("fails with PostgreSQL's error when the statement fails midway, and leaves the connection usable", async () => {
    const failing = `COPY (SELECT g::int8, (1 / (20000 - g))::text, NULL::bytea FROM generate_series(1, 30000) AS g) TO STDOUT (FORMAT binary)`;
    let seen = 0;
    await expect(copyOutRows(client, failing, 3, () => (seen += 1))).rejects.toMatchObject({ code: '22012' });
    expect(seen).toBeGreaterThan(0);
    await expect(copyOutRows(client, 'COPY (SELECT nonsense) TO STDOUT (FORMAT binary)', 1, () => {})).rejects.toMatchObject({
      code: '42703',
    });
    expect((await client.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
  });

  it('fails at once when the handler throws or the caller aborts, and reads the rest away', async () => {
    await expect(
      copyOutRows(client, series(20_000), 3, (buffer, starts) => {
        if (buffer.readBigInt64BE(starts[0]!) === 10n) {
          throw new Error('handler refused row 10');
        }
      }),
    ).rejects.toThrow('handler refused row 10');
    const controller = new AbortController();
    let handled = 0;
    const aborted = copyOutRows(
      client,
      series(200_000),
      3,
      () => {
        handled += 1;
        if (handled === 1_000) {
          controller.abort(new Error('caller went away'));
        }
      },
      controller.signal,
    );
    await expect(aborted).rejects.toThrow('caller went away');
    expect(handled).toBe(1_000);
    // Queued behind the rest of the COPY, read and dropped: the answer is this query's.
    expect((await client.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
  });

  it('refuses a result that is not binary COPY of the expected shape', async () => {
    await expect(copyOutRows(client, 'COPY (SELECT 1) TO STDOUT', 1, () => {})).rejects.toThrow(/FORMAT binary/);
    await expect(copyOutRows(client, series(3), 2, () => {})).rejects.toThrow(/3 fields, expected 2/);
    await expect(copyOutRows(client, 'SELECT 1', 1, () => {})).rejects.toThrow(/without a binary COPY/);
    expect((await client.query('SELECT 4 AS four')).rows).toEqual([{ four: 4 }]);
  });
});

/** A protocol message: type byte, length (counting itself), body. */
const message = (type: string, body: Buffer) => {
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
};
const int16 = (value: number) => Buffer.from([(value >> 8) & 0xff, value & 0xff]);
const int32 = (value: number) => {
  const bytes = Buffer.alloc(4);
  bytes.writeInt32BE(value);
  return bytes;
};
/** A binary COPY tuple of text fields (null: NULL). */
const tuple = (...fields: (string | null)[]) =>
  Buffer.concat([int16(fields.length), ...fields.map((field) => (field === null ? int32(-1) : Buffer.concat([int32(Buffer.byteLength(field)), Buffer.from(field)])))]);

describe('copyOutRows, message by message', () => {
  /**
   * What PostgreSQL sends for a binary COPY of three rows (the header with the first, as it does),
   * with a notice in between, then what pg must still parse after CopyDone.
   */
  const copyBytes = Buffer.concat([
    message('H', Buffer.concat([Buffer.from([1]), int16(2), int16(1), int16(1)])),
    message('d', Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), int32(0), int32(0), tuple('a', null)])),
    message('N', Buffer.from('SNOTICE\0\0')),
    message('d', tuple('é'.repeat(5_000), 'b')),
    message('d', tuple('', 'c')),
    message('d', int16(-1)),
    message('c', Buffer.alloc(0)),
  ]);
  const afterCopy = Buffer.concat([message('C', Buffer.from('COPY 3\0')), message('Z', Buffer.from('I'))]);

  /** A stand-in for pg's client and connection that delivers `bytes` in chunks of `size`. */
  function fakeClient(bytes: Buffer, size: number) {
    const stream = new EventEmitter();
    const toPg: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => toPg.push(chunk));
    const client = {
      query(submittable: { submit(connection: unknown): void; handleReadyForQuery(): void }) {
        submittable.submit({ stream, query: () => {}, sendCopyFail: () => {} });
        for (let at = 0; at < bytes.length; at += size) {
          stream.emit('data', bytes.subarray(at, at + size));
        }
        submittable.handleReadyForQuery();
      },
    };
    return { client: client as unknown as pg.ClientBase, toPg };
  }

  it.each([1, 2, 5, 7, 64, 100_000])('reads the same rows in chunks of %i bytes, and hands pg what follows CopyDone', async (size) => {
    const { client: fake, toPg } = fakeClient(Buffer.concat([copyBytes, afterCopy]), size);
    const rows: (string | null)[][] = [];
    const count = await copyOutRows(fake, 'COPY ...', 2, (buffer, starts, lengths) => {
      rows.push([0, 1].map((field) => (lengths[field]! < 0 ? null : buffer.toString('utf8', starts[field]!, starts[field]! + lengths[field]!))));
    });
    expect(count).toBe(3);
    expect(rows).toEqual([
      ['a', null],
      ['é'.repeat(5_000), 'b'],
      ['', 'c'],
    ]);
    expect(Buffer.concat(toPg).equals(afterCopy)).toBe(true);
  });
});
