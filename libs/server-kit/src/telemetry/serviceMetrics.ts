import type { AccessRecorder, DatabasePool } from '@clinical/db';
import { serviceMeter } from '@clinical/telemetry';
import type { Attributes } from '@opentelemetry/api';
import { Status } from 'nice-grpc';

/*
 * The instruments every service has. Names follow the OpenTelemetry semantic
 * conventions where one exists: rpc.server.call.duration as the stable RPC
 * conventions define it (@opentelemetry/semantic-conventions 1.45: seconds,
 * fully qualified rpc.method, rpc.status_code the status name, rpc.system.name;
 * they replace rpc.server.duration in ms, rpc.service and
 * rpc.grpc.status_code), db.client.connection.*; `clinical.*` otherwise. Attributes are
 * method names, status names and fixed words only: never an id or a value.
 * Instruments are made when a service starts (a meter taken before metrics
 * started would stay a no-op), and cost next to nothing while metrics are off.
 */

/**
 * Bucket bounds of the call duration histogram, in seconds: the semantic
 * conventions' advice, with sub-millisecond buckets added in front (a cached
 * read is served in well under a millisecond).
 */
const CALL_DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

/** Per-call hooks of the server's middleware. Each must be cheap: it runs on every call. */
export interface CallMetrics {
  /** A call ended (any outcome) after `seconds`, with this gRPC status. */
  ended(methodPath: string, status: Status, seconds: number): void;
  /** A call was refused because the in-flight budget was spent (it also ends, UNAVAILABLE). */
  shed(methodPath: string): void;
  /** A call was refused by its caller's rate limit (it also ends, RESOURCE_EXHAUSTED). */
  rateLimited(methodPath: string): void;
}

/** Memoizes attribute sets, so that a call allocates none and the SDK sees the same objects again. */
function memoized<K, V>(make: (key: K) => V): (key: K) => V {
  const made = new Map<K, V>();
  return (key) => {
    let value = made.get(key);
    if (value === undefined) {
      value = make(key);
      made.set(key, value);
    }
    return value;
  };
}

/** `/pkg.Service/Method` → `pkg.Service/Method`, the semantic conventions' fully qualified rpc.method. */
const rpcMethodOf = (path: string) => (path.startsWith('/') ? path.slice(1) : path);

export function createCallMetrics(): CallMetrics {
  const meter = serviceMeter();
  const duration = meter.createHistogram('rpc.server.call.duration', {
    description: 'Duration of incoming gRPC calls, by method and status, from the server receiving the call to its status',
    unit: 's',
    advice: { explicitBucketBoundaries: CALL_DURATION_BUCKETS },
  });
  const shed = meter.createCounter('clinical.rpc.server.shed', {
    description: 'Calls refused with UNAVAILABLE because the calls in flight already cost MAX_IN_FLIGHT_COST',
    unit: '{call}',
  });
  const rateLimited = meter.createCounter('clinical.rpc.server.rate_limited', {
    description: "Calls refused with RESOURCE_EXHAUSTED by their caller's rate limit",
    unit: '{call}',
  });
  const methodAttributes = memoized((path: string): Attributes => ({ 'rpc.method': rpcMethodOf(path) }));
  const callAttributes = memoized((path: string) =>
    memoized(
      (status: Status): Attributes => ({
        'rpc.system.name': 'grpc',
        'rpc.method': rpcMethodOf(path),
        'rpc.status_code': Status[status] ?? String(status),
      }),
    ),
  );
  return {
    ended(methodPath, status, seconds) {
      duration.record(seconds, callAttributes(methodPath)(status));
    },
    shed(methodPath) {
      shed.add(1, methodAttributes(methodPath));
    },
    rateLimited(methodPath) {
      rateLimited.add(1, methodAttributes(methodPath));
    },
  };
}

/**
 * The name a cache key counts under: its first `:`-separated part when that
 * is a lowercase word (`patient:<id>` → `patient`, `analytics:<refresh>:...`
 * → `analytics`), `other` otherwise, so that no id ever becomes a label.
 */
export function cacheNameOf(key: string): string {
  const end = key.indexOf(':');
  const name = end > 0 ? key.slice(0, end) : '';
  return /^[a-z][a-z_]{0,31}$/.test(name) ? name : 'other';
}

/**
 * Cache lookups by cache name, tallied in plain numbers: a synchronous
 * counter would hash its attributes on every lookup (about a microsecond
 * each, two lookups a call), while the tally costs an increment and is read
 * by `clinical.cache.lookups`, an observable counter, when a reader collects.
 */
export interface CacheLookupTally {
  count(cacheName: string, hit: boolean): void;
  /** Lookups so far: per cache name, hits and misses. */
  entries(): Iterable<[string, { hits: number; misses: number }]>;
}

export function createCacheLookupTally(): CacheLookupTally {
  const tallies = new Map<string, { hits: number; misses: number }>();
  return {
    count(cacheName, hit) {
      let tally = tallies.get(cacheName);
      if (!tally) {
        tally = { hits: 0, misses: 0 };
        tallies.set(cacheName, tally);
      }
      if (hit) {
        tally.hits += 1;
      } else {
        tally.misses += 1;
      }
    },
    entries: () => tallies.entries(),
  };
}

/** What the runtime gauges read when a reader collects. */
export interface RuntimeGaugeSources {
  readonly serviceName: string;
  readonly pool: DatabasePool;
  readonly accessRecorder: AccessRecorder;
  /** Calls in flight in the limiter and their summed cost. */
  readonly inFlight: () => { readonly calls: number; readonly cost: number };
  /** Cache lookups so far (absent when they are not counted). */
  readonly cacheLookups?: CacheLookupTally;
}

/**
 * Observable instruments over the runtime's state, read only when a reader
 * collects (a scrape, an OTLP export): calls in flight, database pool
 * connections, the access-audit backlog, cache lookups. Returns their
 * removal (at stop).
 */
export function observeRuntime(sources: RuntimeGaugeSources): () => void {
  const meter = serviceMeter();
  const inFlightCalls = meter.createObservableUpDownCounter('clinical.rpc.server.in_flight', {
    description: 'Calls inside their handlers now (those that count against MAX_IN_FLIGHT_COST)',
    unit: '{call}',
  });
  const inFlightCost = meter.createObservableUpDownCounter('clinical.rpc.server.in_flight.cost', {
    description: 'Summed rate-limit cost of the calls in flight, against MAX_IN_FLIGHT_COST',
    unit: '{point}',
  });
  const connections = meter.createObservableUpDownCounter('db.client.connection.count', {
    description: 'Database pool connections by state: used (lent to a query or transaction) or idle',
    unit: '{connection}',
  });
  const pending = meter.createObservableUpDownCounter('db.client.connection.pending_requests', {
    description: 'Requests waiting for a database pool connection',
    unit: '{request}',
  });
  const auditPending = meter.createObservableUpDownCounter('clinical.access_audit.pending', {
    description: 'Access events recorded and not yet committed (the backlog; reads are refused past ACCESS_AUDIT_MAX_PENDING)',
    unit: '{event}',
  });
  const auditDropped = meter.createObservableCounter('clinical.access_audit.dropped', {
    description: 'Access events dropped because the database refused their data even alone',
    unit: '{event}',
  });
  const auditFailedFlushes = meter.createObservableCounter('clinical.access_audit.failed_flushes', {
    description: 'Flushes of access events that failed (and were retried)',
    unit: '{flush}',
  });
  const cacheLookups = meter.createObservableCounter('clinical.cache.lookups', {
    description: 'Cache lookups by cache name and result: hit (served from the cache) or miss (loaded from PostgreSQL)',
    unit: '{lookup}',
  });
  const lookupAttributes = memoized((name: string): readonly [Attributes, Attributes] => [
    { 'cache.name': name, 'cache.result': 'hit' },
    { 'cache.name': name, 'cache.result': 'miss' },
  ]);
  const pool = { 'db.client.connection.pool.name': sources.serviceName };
  const used = { ...pool, 'db.client.connection.state': 'used' };
  const idle = { ...pool, 'db.client.connection.state': 'idle' };
  const observables = [inFlightCalls, inFlightCost, connections, pending, auditPending, auditDropped, auditFailedFlushes, cacheLookups];
  const observe: Parameters<typeof meter.addBatchObservableCallback>[0] = (result) => {
    const inFlight = sources.inFlight();
    result.observe(inFlightCalls, inFlight.calls);
    result.observe(inFlightCost, inFlight.cost);
    const state = sources.pool.state();
    result.observe(connections, state.acquiredConnections, used);
    result.observe(connections, state.idleConnections, idle);
    result.observe(pending, state.waitingClients, pool);
    const audit = sources.accessRecorder.stats();
    result.observe(auditPending, audit.pending);
    result.observe(auditDropped, audit.dropped ?? 0);
    result.observe(auditFailedFlushes, audit.failedFlushes);
    for (const [name, { hits, misses }] of sources.cacheLookups?.entries() ?? []) {
      const [hit, miss] = lookupAttributes(name);
      result.observe(cacheLookups, hits, hit);
      result.observe(cacheLookups, misses, miss);
    }
  };
  meter.addBatchObservableCallback(observe, observables);
  return () => meter.removeBatchObservableCallback(observe, observables);
}
