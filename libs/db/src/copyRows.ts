import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

/** NULL in PostgreSQL's COPY text format. */
export const COPY_NULL = '\\N';

/**
 * Escapes one value for PostgreSQL's COPY text format: backslash, newline,
 * carriage return and tab are the only characters that need it.
 */
export function copyText(value: string): string {
  return /[\\\n\r\t]/.test(value)
    ? value.replace(/[\\\n\r\t]/g, (character) =>
        character === '\\' ? '\\\\' : character === '\n' ? '\\n' : character === '\r' ? '\\r' : '\\t',
      )
    : value;
}

/**
 * Writes rows already encoded in COPY text format (one line per row, values
 * separated by tabs, `\N` for NULL; see `copyText`) into `table` with one
 * `COPY ... FROM STDIN` statement on `client`, the set-based way to insert
 * many rows. Runs in whatever transaction the client is in, so statement
 * triggers (with their transition tables) fire once for the whole chunk.
 * `lines` may be a string or an iterable of strings: an iterable is streamed
 * with backpressure, never held whole.
 * @returns the number of rows written.
 * @throws the driver's error (with its SQLSTATE) when PostgreSQL refuses a row; nothing of the COPY is kept.
 */
export async function copyRows(
  client: pg.ClientBase,
  table: string,
  columns: readonly string[],
  lines: string | Iterable<string> | AsyncIterable<string>,
): Promise<number> {
  for (const name of [table, ...columns]) {
    if (!IDENTIFIER.test(name)) {
      throw new Error(`copyRows: "${name}" is not a plain lower-case identifier`);
    }
  }
  const statement = client.query(copyFrom(`COPY ${table} (${columns.join(', ')}) FROM STDIN`));
  const source = typeof lines === 'string' ? Readable.from([lines], { objectMode: false }) : Readable.from(lines, { objectMode: false });
  await pipeline(source, statement);
  return statement.rowCount;
}
