import type pg from 'pg';
import { BINARY_COPY_HEADER } from './binaryRowWriter.js';

/**
 * Called once per row with the bytes holding it, where each field starts in
 * them and how long it is (-1 for NULL), in PostgreSQL's binary format (int8
 * big-endian, uuid as 16 bytes, text as its bytes in the client encoding,
 * ...). The arrays are reused for the next row: read them before returning.
 * The buffer is never written to again: keep it to compare a field with a
 * later row's.
 */
/** A uuid field of a binary row (16 bytes from `at`) in its text form. */
export function uuidText(bytes: Uint8Array, at = 0): string {
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset + at, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export type CopyRowHandler = (buffer: Buffer, starts: Int32Array, lengths: Int32Array) => void;

/** The binary COPY signature (then come flags and the header extension's length). */
const SIGNATURE = BINARY_COPY_HEADER.subarray(0, 11);
const HEADER_BYTES = SIGNATURE.length + 8;
/** Protocol messages: a type byte, then a length that counts itself. */
const MESSAGE_HEADER_BYTES = 5;
const COPY_OUT_RESPONSE = 0x48; // 'H'
const COPY_DATA = 0x64; // 'd'
const COPY_DONE = 0x63; // 'c'
/** Sent at any time, COPY or not; nothing a reader of rows needs. */
const ASYNCHRONOUS = new Set([0x4e /* 'N' notice */, 0x53 /* 'S' parameter status */, 0x41 /* 'A' notification */]);

/** The slice of pg's Connection this reads: the socket it parses messages from, and how to send a query. */
interface PgConnection {
  readonly stream: NodeJS.ReadableStream;
  query(text: string): void;
  sendCopyFail(message: string): void;
}

/**
 * A pg Submittable: while its COPY runs it takes the socket's data from pg's
 * parser (as pg-copy-streams does) and reads the protocol messages itself,
 * rows straight out of the chunks the socket delivers. pg-copy-streams
 * instead copies each row out of its message and then joins them into the
 * chunks it streams: for millions of small rows those copies and buffers
 * cost more CPU than hashing them. At CopyDone (or an ErrorResponse) the
 * socket goes back to pg with what follows, and pg finishes the statement.
 */
class BinaryCopyOut {
  readonly done: Promise<number>;
  private resolve!: (rows: number) => void;
  private reject!: (error: unknown) => void;
  private settled = false;
  /** Rows are no longer handed over (the handler threw, or the caller aborted): the rest is read and dropped. */
  private discarding = false;
  private connection?: PgConnection;
  private pgDataListener?: (chunk: Buffer) => void;
  private readonly onData = (chunk: Buffer) => this.receive(chunk);
  /** The start of a message header cut by the end of a chunk. */
  private headerPart?: Buffer;
  /** A message cut by the end of a chunk, filled as the next ones arrive. */
  private message?: { readonly type: number; readonly bytes: Buffer; filled: number };
  private readonly starts: Int32Array;
  private readonly lengths: Int32Array;
  private headerRead = false;
  private trailerRead = false;
  private rows = 0;

  constructor(
    private readonly text: string,
    private readonly fieldCount: number,
    private readonly onRow: CopyRowHandler,
  ) {
    this.starts = new Int32Array(fieldCount);
    this.lengths = new Int32Array(fieldCount);
    this.done = new Promise<number>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Called by pg when the statement's turn comes. */
  submit(connection: PgConnection): void {
    this.connection = connection;
    const listeners = connection.stream.listeners('data');
    if (listeners.length !== 1) {
      throw new Error(`copyOutRows: expected pg's one data listener on the socket, found ${listeners.length}`);
    }
    this.pgDataListener = listeners[0] as (chunk: Buffer) => void;
    connection.stream.removeListener('data', this.pgDataListener);
    connection.stream.on('data', this.onData);
    connection.query(this.text);
  }

  /** Stops handing rows over and fails the call at once; the COPY is still read to its end, so the connection stays usable. */
  abandon(error: unknown): void {
    this.discarding = true;
    this.settle(error);
  }

  handleError(error: unknown): void {
    this.detach();
    this.settle(error);
  }

  handleCommandComplete(): void {}

  // A statement that is no COPY TO answers with what pg parses (rows, or a COPY FROM's request for
  // data): taken and dropped; handleReadyForQuery then fails the call.
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handleCopyInResponse(connection: PgConnection): void {
    connection.sendCopyFail('copyOutRows reads rows, it has none to write');
  }

  handleReadyForQuery(): void {
    this.settle(this.trailerRead ? undefined : new Error('copyOutRows: the statement ended without a binary COPY'));
  }

  private settle(error: unknown): void {
    if (this.settled) {
      return;
    }
    this.settled = true;
    if (error === undefined) {
      this.resolve(this.rows);
    } else {
      this.reject(error);
    }
  }

  /** Gives the socket back to pg, with the bytes from `rest` on. */
  private detach(rest?: Buffer): void {
    const { connection, pgDataListener } = this;
    if (!connection || !pgDataListener) {
      return;
    }
    this.pgDataListener = undefined;
    connection.stream.removeListener('data', this.onData);
    connection.stream.on('data', pgDataListener);
    if (rest && rest.length > 0) {
      pgDataListener(rest);
    }
  }

  private receive(input: Buffer): void {
    let chunk = input;
    let at = 0;
    if (this.message) {
      const message = this.message;
      const taken = Math.min(message.bytes.length - message.filled, chunk.length);
      chunk.copy(message.bytes, message.filled, 0, taken);
      message.filled += taken;
      if (message.filled < message.bytes.length) {
        return;
      }
      this.message = undefined;
      this.handle(message.type, message.bytes, 0, message.bytes.length);
      at = taken;
    } else if (this.headerPart) {
      chunk = Buffer.concat([this.headerPart, chunk]);
      this.headerPart = undefined;
    }
    while (at < chunk.length) {
      if (chunk.length - at < MESSAGE_HEADER_BYTES) {
        this.headerPart = Buffer.from(chunk.subarray(at));
        return;
      }
      const type = chunk.readUInt8(at);
      const start = at + MESSAGE_HEADER_BYTES;
      const end = start + chunk.readInt32BE(at + 1) - 4;
      if (type === COPY_DONE) {
        this.detach(chunk.subarray(end));
        return;
      }
      if (type !== COPY_DATA && type !== COPY_OUT_RESPONSE && !ASYNCHRONOUS.has(type)) {
        // An ErrorResponse, or anything else pg must see: it gets the rest, this message included.
        this.detach(chunk.subarray(at));
        return;
      }
      if (end > chunk.length) {
        const bytes = Buffer.allocUnsafe(end - start);
        chunk.copy(bytes, 0, start);
        this.message = { type, bytes, filled: chunk.length - start };
        return;
      }
      this.handle(type, chunk, start, end);
      at = end;
    }
  }

  /** One whole CopyOutResponse, CopyData or asynchronous message, at start..end of `buffer`. */
  private handle(type: number, buffer: Buffer, start: number, end: number): void {
    if (this.discarding) {
      return;
    }
    try {
      if (type === COPY_OUT_RESPONSE && buffer[start] !== 1) {
        throw new Error('copyOutRows: the statement is not a COPY ... TO STDOUT (FORMAT binary)');
      }
      if (type === COPY_DATA) {
        this.copyData(buffer, start, end);
      }
    } catch (error) {
      this.abandon(error);
    }
  }

  /** PostgreSQL sends each row in one CopyData message; the first also carries the header. */
  private copyData(buffer: Buffer, start: number, end: number): void {
    let at = start;
    if (!this.headerRead) {
      if (end - at < HEADER_BYTES || !buffer.subarray(at, at + SIGNATURE.length).equals(SIGNATURE)) {
        throw new Error('copyOutRows: not a binary COPY stream');
      }
      at += HEADER_BYTES + buffer.readInt32BE(at + SIGNATURE.length + 4);
      this.headerRead = true;
      if (at === end) {
        return;
      }
    }
    const count = buffer.readInt16BE(at);
    at += 2;
    if (count === -1) {
      this.trailerRead = true;
      return;
    }
    const { fieldCount, starts, lengths } = this;
    if (count !== fieldCount) {
      throw new Error(`copyOutRows: a row of ${count} fields, expected ${fieldCount}`);
    }
    for (let field = 0; field < fieldCount; field += 1) {
      const length = buffer.readInt32BE(at);
      at += 4;
      starts[field] = at;
      lengths[field] = length;
      if (length > 0) {
        at += length;
      }
    }
    if (at !== end) {
      throw new Error('copyOutRows: a row does not fill its CopyData message');
    }
    this.rows += 1;
    this.onRow(buffer, starts, lengths);
  }
}

/**
 * Runs `statement`, a `COPY (...) TO STDOUT (FORMAT binary)` of
 * `fieldCount` columns, on `client`, and hands each row to `onRow` as it
 * arrives, as offsets into the bytes read from the socket: no field is
 * copied and no object made per row, the cheapest way for Node to read
 * millions of rows. Rows are handled between two reads of the socket, so
 * memory holds one chunk (or one row, when a row is bigger) whatever the
 * size of the result, and the server waits while `onRow` works.
 *
 * When `onRow` throws or `signal` aborts, the call fails at once and the
 * rest of the COPY is read and dropped: end the connection rather than wait
 * for it.
 * @returns the number of rows.
 * @throws the driver's error (with its SQLSTATE) when PostgreSQL refuses or stops the statement; what
 * `onRow` threw; `signal`'s reason; Error when the result is not binary COPY of `fieldCount` columns.
 */
export async function copyOutRows(
  client: pg.ClientBase,
  statement: string,
  fieldCount: number,
  onRow: CopyRowHandler,
  signal?: AbortSignal,
): Promise<number> {
  signal?.throwIfAborted();
  const copy = new BinaryCopyOut(statement, fieldCount, onRow);
  const abandon = () => copy.abandon(signal?.reason);
  signal?.addEventListener('abort', abandon, { once: true });
  try {
    void client.query(copy as unknown as pg.Submittable);
    return await copy.done;
  } finally {
    signal?.removeEventListener('abort', abandon);
  }
}
