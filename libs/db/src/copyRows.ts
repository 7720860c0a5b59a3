import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { BINARY_COPY_HEADER, BINARY_COPY_TRAILER } from './binaryRowWriter.js';

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

/** Rows already encoded for COPY: text lines (`format: 'text'`) or binary rows (`format: 'binary'`). */
export type CopyData = string | Uint8Array | Iterable<string | Uint8Array> | AsyncIterable<string | Uint8Array>;

export interface CopyRowsOptions {
  /**
   * 'text' (the default): one line per row, values separated by tabs, `\N`
   * for NULL (see `copyText`). 'binary': rows as BinaryRowWriter writes them,
   * without the format's header and trailer, which are added here.
   */
  readonly format?: 'text' | 'binary';
}

/**
 * Writes rows already encoded for COPY into `table` with one
 * `COPY ... FROM STDIN` statement on `client`, the set-based way to insert
 * many rows. Runs in whatever transaction the client is in, so statement
 * triggers fire once for the whole statement. `rows` may be one chunk or an
 * iterable of chunks: an iterable is streamed with backpressure, never held
 * whole.
 * @returns the number of rows written.
 * @throws the driver's error (with its SQLSTATE) when PostgreSQL refuses a row; nothing of the COPY is kept.
 */
export async function copyRows(
  client: pg.ClientBase,
  table: string,
  columns: readonly string[],
  rows: CopyData,
  options: CopyRowsOptions = {},
): Promise<number> {
  for (const name of [table, ...columns]) {
    if (!IDENTIFIER.test(name)) {
      throw new Error(`copyRows: "${name}" is not a plain lower-case identifier`);
    }
  }
  const binary = options.format === 'binary';
  const statement = client.query(copyFrom(`COPY ${table} (${columns.join(', ')}) FROM STDIN${binary ? ' (FORMAT binary)' : ''}`));
  const chunks = typeof rows === 'string' || rows instanceof Uint8Array ? [rows] : rows;
  const source = Readable.from(binary ? framedInBinaryCopy(chunks) : chunks, { objectMode: false });
  await pipeline(source, statement);
  return statement.rowCount;
}

/** `chunks` between the binary format's header and trailer. */
async function* framedInBinaryCopy(
  chunks: Iterable<string | Uint8Array> | AsyncIterable<string | Uint8Array>,
): AsyncGenerator<string | Uint8Array> {
  yield BINARY_COPY_HEADER;
  yield* chunks;
  yield BINARY_COPY_TRAILER;
}
