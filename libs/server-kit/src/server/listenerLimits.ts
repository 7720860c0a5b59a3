import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import * as http2 from 'node:http2';
import type { AddressInfo, Server as NetServer } from 'node:net';
import type { Logger } from '@clinical/telemetry';
import type { Server } from 'nice-grpc';
import type { ConnectionLimits } from './connectionLimits.js';

/** Published by Node when a server has started listening, with that server. */
const LISTENING_CHANNEL = 'tracing:net.server.listen:asyncEnd';
/** The GOAWAY debug data gRPC clients read as "ping less often" (they double their keepalive time). */
const TOO_MANY_PINGS = Buffer.from('too_many_pings');
/** Room in the HTTP/2 header list, besides the call's metadata, for the request line and gRPC's own headers. */
export const HEADER_HEADROOM_BYTES = 8 * 1024;
const WARNING_INTERVAL_MS = 10_000;

/** Counts refusals and logs them at most once per interval, with how many there were since the last line. */
function countedWarning(logger: Logger, field: string, message: string): () => void {
  let count = 0;
  let lastLoggedAt = 0;
  return () => {
    count += 1;
    const now = Date.now();
    if (now - lastLoggedAt >= WARNING_INTERVAL_MS) {
      lastLoggedAt = now;
      logger.warn({ [field]: count }, message);
      count = 0;
    }
  };
}

/**
 * Closes a connection whose client pings more often than the policy allows
 * (gRFC A8's enforcement, which grpc-js servers lack): a ping sooner than
 * minPingIntervalMs after the previous one is a strike unless a call was
 * started in between, and one strike past maxPingStrikes ends the connection
 * with GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
 */
function enforcePingPolicy(session: http2.ServerHttp2Session, policy: ConnectionLimits['keepalive'], onStrikeOut: () => void): void {
  let lastPingAt = Number.NEGATIVE_INFINITY;
  let strikes = 0;
  session.on('stream', () => {
    strikes = 0;
  });
  session.on('ping', () => {
    const now = performance.now();
    if (now - lastPingAt < policy.minPingIntervalMs) {
      strikes += 1;
    }
    lastPingAt = now;
    if (strikes > policy.maxPingStrikes && !session.destroyed) {
      onStrikeOut();
      session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, session.state.lastProcStreamID ?? 0, TOO_MANY_PINGS);
      session.destroy();
    }
  });
}

/**
 * `server`, whose listen also applies the limits grpc-js has no options for,
 * on the HTTP/2 servers grpc-js listens with: the connection count (Node's
 * maxConnections: a connection past it is closed as it is accepted, and the
 * client's call fails with UNAVAILABLE), the header list size clients are
 * told (SETTINGS_MAX_HEADER_LIST_SIZE: a bigger one is reset, which clients
 * report as RESOURCE_EXHAUSTED) and the ping policy. grpc-js does not expose
 * those servers; Node publishes every server that starts listening, and the
 * ones bound to the port grpc-js reports are this server's. Refusals are
 * counted and logged at warn, without addresses.
 * @throws Error from listen when no such server is found (the limits would not hold): the server is stopped.
 */
export function withListenerLimits<Context>(server: Server<Context>, limits: ConnectionLimits, logger: Logger): Server<Context> {
  const connectionRefused = countedWarning(logger, 'refusedConnections', 'connections refused: GRPC_MAX_CONNECTIONS are open');
  const pingStrikeOut = countedWarning(
    logger,
    'closedConnections',
    'connections closed for pinging more often than GRPC_KEEPALIVE_MIN_PING_INTERVAL_MS (too_many_pings)',
  );
  return {
    ...server,
    async listen(address, credentials) {
      const listening: NetServer[] = [];
      const collect = (message: unknown) => {
        listening.push((message as { server: NetServer }).server);
      };
      subscribe(LISTENING_CHANNEL, collect);
      let port: number;
      try {
        port = await server.listen(address, credentials);
      } finally {
        unsubscribe(LISTENING_CHANNEL, collect);
      }
      const listeners = listening.filter((listener) => (listener.address() as AddressInfo | null)?.port === port) as (
        | http2.Http2Server
        | http2.Http2SecureServer
      )[];
      if (listeners.length === 0) {
        server.forceShutdown();
        throw new Error(`the HTTP/2 servers listening on ${address} were not found: connection limits cannot be applied`);
      }
      for (const listener of listeners) {
        listener.maxConnections = limits.maxConnections;
        listener.on('drop', connectionRefused);
        listener.updateSettings({ maxHeaderListSize: limits.maxMetadataBytes + HEADER_HEADROOM_BYTES });
        listener.on('session', (session: http2.ServerHttp2Session) => enforcePingPolicy(session, limits.keepalive, pingStrikeOut));
      }
      return port;
    },
  };
}
