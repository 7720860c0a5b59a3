import { createServer, type Server } from 'node:net';
import { testRedisTarget, uniqueKeyPrefix } from '@clinical/testing';
import { createRedisClient, waitForRedis, type RedisClient } from './createRedisClient.js';

/** A client of the test Redis (the server, or the project's cluster) under a fresh key prefix. */
export async function testRedisClient(): Promise<RedisClient> {
  const redis = createRedisClient({ ...testRedisTarget(), keyPrefix: uniqueKeyPrefix() });
  await waitForRedis(redis, 5_000);
  return redis;
}

/**
 * A TCP server that accepts connections and never answers: a hung Redis.
 * `bytesReceived` tells whether callers are still sending it commands.
 */
export async function startBlackholeServer(): Promise<{ url: string; bytesReceived(): number; close(): Promise<void> }> {
  let received = 0;
  const sockets = new Set<import('node:net').Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (chunk) => {
      received += chunk.length;
    });
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${port}`,
    bytesReceived: () => received,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) {
          socket.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
