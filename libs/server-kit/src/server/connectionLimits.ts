import type * as grpc from '@grpc/grpc-js';
import { metadataLimitInterceptor } from './metadataLimit.js';

/**
 * What one caller may make a service hold: message and metadata sizes,
 * calls per connection, connections, and how long a connection may live.
 * The GRPC_* variables set them; the README lists their defaults.
 */
export interface ConnectionLimits {
  /**
   * Largest request message. 4 MiB, gRPC's default, holds the largest request
   * the services accept (a document version is at most ~2 MiB encoded, a
   * BatchCreatePatients at most 1000 patients); a bigger one is refused with
   * RESOURCE_EXHAUSTED before it is decoded.
   */
  readonly maxReceiveMessageBytes: number;
  /**
   * Largest metadata (request headers) of a call, counted as HTTP/2 counts a
   * header list: name, value and 32 bytes per entry. 16 KiB holds a bearer
   * token many times over; metadata is held in memory for the whole call.
   */
  readonly maxMetadataBytes: number;
  /**
   * Calls in flight on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
   * A client queues calls past it until one finishes; 100 is what HTTP/2
   * recommends at least, and MAX_IN_FLIGHT_COST bounds the process as a whole.
   */
  readonly maxConcurrentStreams: number;
  /**
   * Open connections to the process; a connection past it is closed as soon
   * as it is accepted, before any TLS or HTTP/2 work. 500 keeps the process
   * well under a 1024 file descriptor limit with its database and Redis pools.
   */
  readonly maxConnections: number;
  readonly keepalive: {
    /** How often the server pings a connection to learn that its peer is still there. */
    readonly timeMs: number;
    /** How long a ping may go unanswered before the connection is dropped. */
    readonly timeoutMs: number;
    /**
     * A client's ping sooner than this after its previous one, with no call
     * started in between, is a strike. 5 minutes is gRPC's own default, which
     * gRPC clients are told to respect.
     */
    readonly minPingIntervalMs: number;
    /** Strikes tolerated; the next one closes the connection with GOAWAY too_many_pings (gRPC's default: 2). */
    readonly maxPingStrikes: number;
  };
  /** A connection with no call in flight for this long is closed (GOAWAY), freeing its place under maxConnections. */
  readonly maxConnectionIdleMs: number;
  /**
   * A connection older than this (±10%) is asked to go away, so that clients
   * spread over replicas added since they connected.
   */
  readonly maxConnectionAgeMs: number;
  /** How long calls in flight on a connection asked to go away may still take before it is closed. */
  readonly maxConnectionAgeGraceMs: number;
}

/**
 * The grpc-js server options that enforce `limits` (those grpc-js knows),
 * merged into `options`. The metadata check runs before any other interceptor.
 * Connections, pings and the HTTP/2 header list are limited at the listener
 * (listenerLimits.ts): grpc-js has no options for them.
 */
export function withConnectionLimits(options: grpc.ServerOptions, limits: ConnectionLimits): grpc.ServerOptions {
  return {
    ...options,
    'grpc.max_receive_message_length': limits.maxReceiveMessageBytes,
    'grpc.max_concurrent_streams': limits.maxConcurrentStreams,
    'grpc.keepalive_time_ms': limits.keepalive.timeMs,
    'grpc.keepalive_timeout_ms': limits.keepalive.timeoutMs,
    'grpc.max_connection_idle_ms': limits.maxConnectionIdleMs,
    'grpc.max_connection_age_ms': limits.maxConnectionAgeMs,
    'grpc.max_connection_age_grace_ms': limits.maxConnectionAgeGraceMs,
    interceptors: [metadataLimitInterceptor(limits.maxMetadataBytes), ...(options.interceptors ?? [])],
  };
}
