/**
 * The baseline: a bare grpc-js server (no framework, no middleware) whose one
 * unary method answers every request with the same pre-encoded bytes. Run as
 * its own process, exactly like a service: `tsx src/echoServer.ts <bytes-file>`.
 * Prints its port on stdout.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

const response = readFileSync(process.argv[2] as string);
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
    Echo: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, response),
  },
);
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) {
    throw error;
  }
  process.stdout.write(`${port}\n`);
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
