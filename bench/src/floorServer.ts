/**
 * The floor of an RPC: a bare grpc-js server (no framework, no middleware)
 * that does only what the RPC cannot avoid. Run as its own process, exactly
 * like a service: `tsx src/floorServer.ts <spec.json>`; prints its port.
 * The spec (FloorSpec) names:
 * - the answer: the bytes of a sample response, sent as they are (the bare
 *   echo), or, with `responseType`, that message encoded again on every call;
 * - for a database floor, the statements each call runs through a raw pg
 *   pool (in one transaction when asked, as a write with its audit context
 *   does), with values taken from the decoded request or made unique per call.
 */
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import * as contracts from '@clinical/contracts';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { uuidV7 } from './uuidV7.js';

/**
 * A statement value: a literal; a field of the request (dotted path; a
 * timestamp as its ISO text, as the services send one), or the first group
 * `match` captures in it (an etag's version, an instant's UTC date); `unique`
 * followed by a text no other call gets; or `uuidV7`: a new time-ordered
 * UUID per call (RFC 9562 version 7, as vitals-svc makes its ids).
 */
export type FloorValue =
  | string
  | number
  | boolean
  | null
  | readonly string[]
  | { readonly request: string; readonly match?: string }
  | { readonly unique: string }
  | { readonly uuidV7: true };

export interface FloorStatement {
  readonly text: string;
  readonly values: readonly FloorValue[];
  /**
   * Fail the call when the statement returns or changes no row: a read that
   * found nothing, or an INSERT ... SELECT whose condition held for no row,
   * would make the floor cheaper than the work it stands for.
   */
  readonly expectRows?: boolean;
}

export interface FloorSpec {
  /** The method path it serves (`/pkg.Service/Method`, the measured RPC's, so that calls are alike on the wire). */
  readonly path: string;
  /** A sample response's bytes, base64. */
  readonly response: string;
  /** `namespace.Message` in @clinical/contracts (`patientV1.GetPatientResponse`): encode the sample on every call. */
  readonly responseType?: string;
  /** The request's type, to decode it when a value names one of its fields. */
  readonly requestType?: string;
  readonly databaseUrl?: string;
  readonly statements?: readonly FloorStatement[];
  /** Run the statements in BEGIN … COMMIT. */
  readonly transaction?: boolean;
}

interface MessageType {
  decode(bytes: Uint8Array): unknown;
  encode(message: unknown): { finish(): Uint8Array };
}

function messageType(name: string): MessageType {
  const [namespace, message] = name.split('.');
  const type = (contracts as unknown as Record<string, Record<string, MessageType> | undefined>)[namespace!]?.[message!];
  if (!type) {
    throw new Error(`floor: no message type ${name} in @clinical/contracts`);
  }
  return type;
}

const spec = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as FloorSpec;
const sampleBytes = Buffer.from(spec.response, 'base64');
const responseType = spec.responseType ? messageType(spec.responseType) : undefined;
const sample = responseType?.decode(sampleBytes);
const requestType = spec.requestType ? messageType(spec.requestType) : undefined;
const statements = spec.statements ?? [];
// The services' default pool size.
const pool = statements.length > 0 ? new pg.Pool({ connectionString: spec.databaseUrl, max: 10 }) : undefined;
const runId = randomUUID().slice(0, 8);
let sequence = 0;

const isList = (value: FloorValue): value is readonly string[] => Array.isArray(value);

function valuesOf(statement: FloorStatement, request: unknown, unique: string): unknown[] {
  return statement.values.map((value) => {
    if (value === null || typeof value !== 'object' || isList(value)) {
      return value;
    }
    if ('unique' in value) {
      return `${value.unique}${unique}`;
    }
    if ('uuidV7' in value) {
      return uuidV7(Date.now());
    }
    const found = value.request.split('.').reduce<unknown>((parent, name) => (parent as Record<string, unknown> | undefined)?.[name], request);
    const field = found instanceof Date ? found.toISOString() : found;
    return value.match ? new RegExp(value.match).exec(String(field))?.[1] : field;
  });
}

async function runStatements(requestBytes: Buffer): Promise<void> {
  const request = requestType?.decode(requestBytes);
  sequence += 1;
  const unique = `${runId}-${sequence}`;
  const client = await pool!.connect();
  try {
    if (spec.transaction) {
      await client.query('BEGIN');
    }
    for (const statement of statements) {
      const result = await client.query(statement.text, valuesOf(statement, request, unique));
      if (statement.expectRows && !result.rowCount) {
        throw new Error('floor: a statement expected to return rows returned none');
      }
    }
    if (spec.transaction) {
      await client.query('COMMIT');
    }
    client.release();
  } catch (error) {
    client.release(error as Error);
    throw error;
  }
}

const answer = () => (responseType ? Buffer.from(responseType.encode(sample).finish()) : sampleBytes);
const server = new grpc.Server();
server.addService(
  {
    Floor: {
      path: spec.path,
      requestStream: false,
      responseStream: false,
      requestSerialize: (value: Buffer) => value,
      requestDeserialize: (bytes: Buffer) => bytes,
      responseSerialize: (value: Buffer) => value,
      responseDeserialize: (bytes: Buffer) => bytes,
    },
  },
  {
    Floor: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      if (!pool) {
        callback(null, answer());
        return;
      }
      runStatements(call.request).then(
        () => callback(null, answer()),
        (error: Error) => callback({ code: grpc.status.UNAVAILABLE, details: error.message }),
      );
    },
  },
);
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) {
    throw error;
  }
  process.stdout.write(`${port}\n`);
});
process.on('SIGTERM', () => server.tryShutdown(() => void (pool?.end() ?? Promise.resolve()).then(() => process.exit(0))));
