/**
 * The baseline: a bare grpc-js server (no framework, no middleware) whose one
 * unary method answers every request with the same pre-encoded bytes. Run as
 * its own process, exactly like a service: `tsx src/echoServer.ts <bytes-file>
 * [<query-file>]`. With a query file (JSON: url, text, values), each call first
 * runs that statement through a raw pg pool of the services' default size and
 * reads its rows: the floor of an RPC that reads the database. Prints its port
 * on stdout.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';

const response = readFileSync(process.argv[2] as string);
const queryFile = process.argv[3];
const query = queryFile ? (JSON.parse(readFileSync(queryFile, 'utf8')) as { url: string; text: string; values: unknown[] }) : undefined;
const pool = query ? new pg.Pool({ connectionString: query.url, max: 10 }) : undefined;
const server = new grpc.Server();
server.addService(
  {
    Echo: {
      path: '/bench.Echo/Echo',
      requestStream: false,
      responseStream: false,
      requestSerialize: (value: Buffer) => value,
      requestDeserialize: (bytes: Buffer) => bytes,
      responseSerialize: (value: Buffer) => value,
      responseDeserialize: (bytes: Buffer) => bytes,
    },
  },
  {
    Echo: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      if (!pool || !query) {
        callback(null, response);
        return;
      }
      pool.query(query.text, query.values).then(
        () => callback(null, response),
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
