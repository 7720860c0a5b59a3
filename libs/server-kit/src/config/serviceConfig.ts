import { z } from 'zod';
import type { ConnectionLimits } from '../server/connectionLimits.js';
import type { TlsSettings } from '../transport/transportSecurity.js';
import { loadConfig } from './loadConfig.js';

const integer = (defaultValue: number, min = 0) => z.coerce.number().int().min(min).default(defaultValue);
/** A positive count that grpc-js and Node keep in 32 bits. */
const count = (defaultValue: number) => z.coerce.number().int().min(1).max(2 ** 31 - 1).default(defaultValue);
/** A positive duration of at most a day: Node's timers overflow past 2^31 ms, and grpc-js adds 10% jitter to some. */
const duration = (defaultValue: number) => z.coerce.number().int().min(1).max(86_400_000).default(defaultValue);

/** The four services, each with its default port and database role. */
export const SERVICES = {
  'patient-svc': { port: 50051, databaseRole: 'clinical_patient_svc', envPrefix: 'PATIENT_SVC' },
  'vitals-svc': { port: 50052, databaseRole: 'clinical_vitals_svc', envPrefix: 'VITALS_SVC' },
  'audit-svc': { port: 50053, databaseRole: 'clinical_audit_svc', envPrefix: 'AUDIT_SVC' },
  'analytics-svc': { port: 50054, databaseRole: 'clinical_analytics_svc', envPrefix: 'ANALYTICS_SVC' },
} as const;

export type ServiceName = keyof typeof SERVICES;

/**
 * How a service process starts, from its directory, after `nx build`: its
 * bundle, with telemetry registered first. The old-space cap keeps resident
 * memory flat under load: the live heap is ~30 MB, and without a cap V8 lets
 * garbage pile up to several times that before collecting it. The young
 * generation's ceiling is pinned to Node 20's default (16 MiB semi-spaces):
 * on Node 24 with the cap alone, streaming 300,000 readings cost vitals-svc
 * 9.99 s of CPU, and 2.72 s with this flag (one run each, on a busy machine).
 */
export const SERVICE_PROCESS_ARGUMENTS = [
  '--enable-source-maps',
  '--max-old-space-size=128',
  '--max-semi-space-size=16',
  '--import',
  './dist/telemetry-register.mjs',
  'dist/main.mjs',
] as const;

/** Settings every service reads; the README lists them. */
export interface ServiceConfig {
  readonly serviceName: ServiceName;
  readonly host: string;
  readonly port: number;
  /** TLS (and mutual TLS) on the port; plaintext when absent, which production refuses. */
  readonly tls?: TlsSettings;
  /** The service's own role's connection URL. */
  readonly databaseUrl: string;
  readonly databasePoolSize: number;
  readonly databaseStatementTimeoutMs: number;
  /**
   * Streaming replicas for reads that may go there, with the primary's role
   * and password; empty: every read is the primary's.
   */
  readonly databaseReplicaUrls: readonly string[];
  /** A read without a consistency token may miss commits younger than this; older, it goes to the primary. */
  readonly replicaMaxLagMs: number;
  /** How long a read with a consistency token waits for a replica to replay that far before it goes to the primary. */
  readonly replicaTokenWaitMs: number;
  /**
   * Where cache entries, rate-limit windows and sessions live: Redis, shared by
   * every replica, or this process alone (development without a Redis server).
   */
  readonly stateStore: 'redis' | 'memory';
  readonly redisUrl?: string;
  readonly redisClusterNodes: readonly string[];
  /** TLS to Redis (rediss://, or REDIS_CLUSTER_TLS=on), with these PEM files when given; absent: plaintext. */
  readonly redisTls?: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string };
  readonly redisKeyPrefix: string;
  readonly redisCommandTimeoutMs: number;
  readonly jwt: {
    readonly secret?: string;
    readonly publicKey?: string;
    readonly publicKeyAlgorithm: string;
    /** A JWKS file of verification keys, chosen by each token's kid; reloaded when it changes. */
    readonly jwksFile?: string;
    readonly jwksReloadIntervalMs: number;
    readonly issuer: string;
    readonly audience: string;
  };
  /** Seals page tokens; the same on every replica (defaults to one derived from the JWT key). */
  readonly pageTokenSecret: string;
  readonly rateLimit: { readonly points: number; readonly windowSeconds: number };
  readonly cacheTtlSeconds: { readonly patient: number; readonly query: number; readonly session: number };
  /** How long a request_id's first response is kept for retries. */
  readonly idempotencyRetentionHours: number;
  readonly accessAudit: {
    /** Off only to measure what auditing costs (benchmarks); the service then says so at every start. */
    readonly enabled: boolean;
    readonly flushIntervalMs: number;
    readonly maxPendingEvents: number;
    /** Refused calls recorded one by one per source address and minute (a flood cannot fill the trail). */
    readonly refusalsPerSourcePerMinute: number;
  };
  /** How long health reports NOT_SERVING before the server stops taking calls (load balancers move away). */
  readonly shutdownDrainMs: number;
  /** How long in-flight calls may take to finish before they are cancelled. */
  readonly shutdownGraceMs: number;
  /** The rate-limit cost of the calls in flight in one process past which new ones are refused (UNAVAILABLE). */
  readonly maxInFlightCost: number;
  /** Message and metadata sizes, calls per connection, connections and keepalive (GRPC_MAX_*, GRPC_KEEPALIVE_*). */
  readonly connectionLimits: ConnectionLimits;
  readonly logLevel: string;
}

const commonVariables = z.object({
    GRPC_HOST: z.string().default('0.0.0.0'),
    TLS_CERT_FILE: z.string().optional(),
    TLS_KEY_FILE: z.string().optional(),
    TLS_CLIENT_CA_FILE: z.string().optional(),
    TLS_RELOAD_INTERVAL_MS: integer(5_000, 100),
    TLS_SERVICE_IDENTITIES: z.string().optional(),
    DATABASE_URL: z.string().url({ message: 'must be a postgres:// URL' }).optional(),
    DATABASE_POOL_SIZE: integer(10, 1),
    DATABASE_STATEMENT_TIMEOUT_MS: integer(5_000, 100),
    DATABASE_REPLICA_URLS: z
      .string()
      .refine((urls) => urls.split(',').every((url) => URL.canParse(url.trim())), 'must be postgres:// URLs, separated by commas')
      .optional(),
    REPLICA_MAX_LAG_MS: integer(1_000, 0),
    REPLICA_TOKEN_WAIT_MS: integer(100, 0),
    STATE_STORE: z.enum(['redis', 'memory']).default('redis'),
    REDIS_URL: z.string().url({ message: 'must be a redis:// URL' }).optional(),
    REDIS_CLUSTER_NODES: z
      .string()
      .regex(/^[^\s,:]+:\d+(,[^\s,:]+:\d+)*$/, 'must be host:port[,host:port...]')
      .optional(),
    REDIS_CLUSTER_TLS: z.enum(['on', 'off']).default('off'),
    REDIS_TLS_CA_FILE: z.string().optional(),
    REDIS_TLS_CERT_FILE: z.string().optional(),
    REDIS_TLS_KEY_FILE: z.string().optional(),
    REDIS_KEY_PREFIX: z.string().default('clinical:'),
    REDIS_COMMAND_TIMEOUT_MS: integer(250, 10),
    JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    JWT_PUBLIC_KEY: z.string().includes('BEGIN PUBLIC KEY', { message: 'must be a PEM public key' }).optional(),
    JWT_PUBLIC_KEY_ALGORITHM: z.enum(['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'PS256', 'EdDSA']).default('RS256'),
    JWT_JWKS_FILE: z.string().optional(),
    JWT_JWKS_RELOAD_INTERVAL_MS: integer(5_000, 100),
    PAGE_TOKEN_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    JWT_ISSUER: z.string().default('clinical-platform'),
    JWT_AUDIENCE: z.string().default('clinical-data-services'),
    RATE_LIMIT_POINTS: integer(1_200, 1),
    RATE_LIMIT_WINDOW_SECONDS: integer(60, 1),
    PATIENT_CACHE_TTL_SECONDS: integer(300, 1),
    QUERY_CACHE_TTL_SECONDS: integer(300, 1),
    SESSION_TTL_SECONDS: integer(3_600, 1),
    IDEMPOTENCY_RETENTION_HOURS: integer(24, 1),
    ACCESS_AUDIT: z.enum(['on', 'off']).default('on'),
    ACCESS_AUDIT_FLUSH_MS: integer(100, 1),
    ACCESS_AUDIT_MAX_PENDING: integer(100_000, 1),
    REFUSAL_AUDIT_PER_MINUTE: integer(60, 1),
    SHUTDOWN_DRAIN_MS: integer(2_000, 0),
    SHUTDOWN_GRACE_MS: integer(10_000, 0),
    MAX_IN_FLIGHT_COST: integer(256, 1),
    GRPC_MAX_RECEIVE_MESSAGE_BYTES: count(4 * 1024 * 1024),
    GRPC_MAX_METADATA_BYTES: count(16 * 1024),
    GRPC_MAX_CONCURRENT_STREAMS: count(100),
    GRPC_MAX_CONNECTIONS: count(500),
    GRPC_KEEPALIVE_TIME_MS: duration(120_000),
    GRPC_KEEPALIVE_TIMEOUT_MS: duration(20_000),
    GRPC_KEEPALIVE_MIN_PING_INTERVAL_MS: duration(300_000),
    GRPC_KEEPALIVE_MAX_PING_STRIKES: z.coerce.number().int().min(0).max(1_000).default(2),
    GRPC_MAX_CONNECTION_IDLE_MS: duration(300_000),
    GRPC_MAX_CONNECTION_AGE_MS: duration(1_800_000),
    GRPC_MAX_CONNECTION_AGE_GRACE_MS: duration(300_000),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

/** Redis is required unless the state is kept in process, and then it must not be half-configured. */
function stateStoreProblems(variables: Record<string, string>): string[] {
  const redisConfigured = Boolean(variables.REDIS_URL || variables.REDIS_CLUSTER_NODES);
  if (variables.STATE_STORE === 'memory') {
    return [
      ...(redisConfigured ? ['STATE_STORE: memory uses no Redis; unset REDIS_URL and REDIS_CLUSTER_NODES, or use redis'] : []),
      // Sessions that cannot be revoked and caches other replicas cannot invalidate: development only.
      ...(variables.NODE_ENV === 'production' ? ['STATE_STORE: memory is for development, not NODE_ENV=production'] : []),
    ];
  }
  if (variables.STATE_STORE !== undefined && variables.STATE_STORE !== 'redis') {
    return [];
  }
  return redisConfigured ? [] : ['REDIS_URL: required (or REDIS_CLUSTER_NODES, or STATE_STORE=memory for one process per service)'];
}

/** Exactly one source of token keys; page tokens need a secret when the token keys are not one. */
function tokenKeyProblems(variables: Record<string, string>): string[] {
  const sources = ['JWT_SECRET', 'JWT_PUBLIC_KEY', 'JWT_JWKS_FILE'].filter((name) => variables[name]);
  return [
    ...(sources.length === 0 ? ['JWT_SECRET: set JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_FILE'] : []),
    ...(sources.length > 1 ? [`${sources.join(', ')}: set one source of token keys`] : []),
    ...(!variables.JWT_SECRET && !variables.PAGE_TOKEN_SECRET && sources.length === 1
      ? [`PAGE_TOKEN_SECRET: required when tokens are verified with ${sources[0]}`]
      : []),
  ];
}

/** Whether the Redis settings ask for TLS: a rediss:// URL, or cluster nodes with REDIS_CLUSTER_TLS=on. */
const redisOverTls = (variables: { REDIS_URL?: string; REDIS_CLUSTER_NODES?: string; REDIS_CLUSTER_TLS?: string }) =>
  variables.REDIS_CLUSTER_NODES ? variables.REDIS_CLUSTER_TLS === 'on' : /^rediss:/i.test(variables.REDIS_URL ?? '');

/** The sslmode of a database URL, or undefined. */
function sslModeOf(url: string | undefined): string | undefined {
  try {
    return url ? (new URL(url).searchParams.get('sslmode') ?? undefined) : undefined;
  } catch {
    return undefined;
  }
}

/** TLS settings that do not hold together, and plaintext where production needs TLS. */
function tlsProblems(variables: Record<string, string>, databaseUrlVariable: string): string[] {
  const production = variables.NODE_ENV === 'production';
  const redisFiles = ['REDIS_TLS_CA_FILE', 'REDIS_TLS_CERT_FILE', 'REDIS_TLS_KEY_FILE'].filter((name) => variables[name]);
  const databaseUrl = variables[databaseUrlVariable] ?? variables.DATABASE_URL;
  return [
    ...(Boolean(variables.REDIS_TLS_CERT_FILE) !== Boolean(variables.REDIS_TLS_KEY_FILE)
      ? ['REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE: set both, or neither']
      : []),
    ...(redisFiles.length > 0 && !redisOverTls(variables)
      ? [`${redisFiles.join(', ')}: Redis over TLS needs a rediss:// REDIS_URL (or REDIS_CLUSTER_TLS=on)`]
      : []),
    ...(production && variables.STATE_STORE !== 'memory' && !redisOverTls(variables)
      ? ['REDIS_URL: NODE_ENV=production talks to Redis over TLS only; use rediss:// (or REDIS_CLUSTER_TLS=on)']
      : []),
    ...(production && !['verify-full', 'verify-ca'].includes(sslModeOf(databaseUrl) ?? '')
      ? [`${variables[databaseUrlVariable] ? databaseUrlVariable : 'DATABASE_URL'}: NODE_ENV=production needs sslmode=verify-full (or verify-ca)`]
      : []),
    ...(production && replicaUrlsOf(variables.DATABASE_REPLICA_URLS).some((url) => !['verify-full', 'verify-ca'].includes(sslModeOf(url) ?? ''))
      ? ['DATABASE_REPLICA_URLS: NODE_ENV=production needs sslmode=verify-full (or verify-ca) on each']
      : []),
    ...(Boolean(variables.TLS_CERT_FILE) !== Boolean(variables.TLS_KEY_FILE) ? ['TLS_CERT_FILE, TLS_KEY_FILE: set both, or neither'] : []),
    ...(variables.TLS_CLIENT_CA_FILE && !variables.TLS_CERT_FILE ? ['TLS_CLIENT_CA_FILE: mutual TLS needs TLS_CERT_FILE and TLS_KEY_FILE'] : []),
    ...(variables.TLS_SERVICE_IDENTITIES && !variables.TLS_CLIENT_CA_FILE
      ? ['TLS_SERVICE_IDENTITIES: identities come from client certificates; set TLS_CLIENT_CA_FILE']
      : []),
    ...(variables.NODE_ENV === 'production' && !variables.TLS_CERT_FILE
      ? ['TLS_CERT_FILE: NODE_ENV=production serves TLS only; set TLS_CERT_FILE and TLS_KEY_FILE']
      : []),
  ];
}

const replicaUrlsOf = (urls: string | undefined): string[] =>
  urls ? urls.split(',').map((url) => url.trim()).filter(Boolean) : [];

/** A replica's URL with the primary connection's user and password (the roles replicate with the data). */
function withCredentialsOf(replicaUrl: string, databaseUrl: string): string {
  const [url, from] = [new URL(replicaUrl), new URL(databaseUrl)];
  url.username = from.username;
  url.password = from.password;
  return url.toString();
}

/** The DATABASE_URL with its user swapped for the service's role (same host, database, options). */
function roleUrl(databaseUrl: string, role: string): string {
  const url = new URL(databaseUrl);
  url.username = role;
  url.password = '';
  return url.toString();
}

/**
 * Reads a service's configuration from the environment. Its database URL is
 * `<PREFIX>_DATABASE_URL` (PATIENT_SVC_DATABASE_URL, ...) or else
 * DATABASE_URL with the service's role as user; its port `<PREFIX>_PORT`.
 * @throws ConfigError naming each bad variable.
 */
export function loadServiceConfig(serviceName: ServiceName, env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const service = SERVICES[serviceName];
  const ownUrlVariable = `${service.envPrefix}_DATABASE_URL`;
  const schema = commonVariables.extend({
    [`${service.envPrefix}_PORT`]: z.coerce.number().int().min(0).max(65_535).default(service.port),
    [ownUrlVariable]: z.string().url({ message: 'must be a postgres:// URL' }).optional(),
  });
  const parsed = loadConfig(schema, env, (variables) => [
    ...tokenKeyProblems(variables),
    ...(variables.DATABASE_URL || variables[ownUrlVariable] ? [] : [`DATABASE_URL: required (or ${ownUrlVariable})`]),
    ...stateStoreProblems(variables),
    ...tlsProblems(variables, ownUrlVariable),
  ]) as z.infer<typeof commonVariables> & Record<string, unknown>;
  const ownUrl = parsed[ownUrlVariable] as string | undefined;
  const databaseUrl = ownUrl ?? roleUrl(parsed.DATABASE_URL as string, service.databaseRole);
  return {
    serviceName,
    host: parsed.GRPC_HOST,
    port: parsed[`${service.envPrefix}_PORT`] as number,
    tls:
      parsed.TLS_CERT_FILE && parsed.TLS_KEY_FILE
        ? {
            certFile: parsed.TLS_CERT_FILE,
            keyFile: parsed.TLS_KEY_FILE,
            clientCaFile: parsed.TLS_CLIENT_CA_FILE,
            reloadIntervalMs: parsed.TLS_RELOAD_INTERVAL_MS,
            serviceIdentities: parsed.TLS_SERVICE_IDENTITIES?.split(',').map((identity) => identity.trim()).filter(Boolean) ?? [],
          }
        : undefined,
    databaseUrl,
    databasePoolSize: parsed.DATABASE_POOL_SIZE,
    databaseStatementTimeoutMs: parsed.DATABASE_STATEMENT_TIMEOUT_MS,
    databaseReplicaUrls: replicaUrlsOf(parsed.DATABASE_REPLICA_URLS).map((url) => withCredentialsOf(url, databaseUrl)),
    replicaMaxLagMs: parsed.REPLICA_MAX_LAG_MS,
    replicaTokenWaitMs: parsed.REPLICA_TOKEN_WAIT_MS,
    stateStore: parsed.STATE_STORE,
    redisUrl: parsed.REDIS_URL,
    redisClusterNodes: parsed.REDIS_CLUSTER_NODES?.split(',') ?? [],
    redisTls: redisOverTls(parsed)
      ? { caFile: parsed.REDIS_TLS_CA_FILE, certFile: parsed.REDIS_TLS_CERT_FILE, keyFile: parsed.REDIS_TLS_KEY_FILE }
      : undefined,
    redisKeyPrefix: parsed.REDIS_KEY_PREFIX,
    redisCommandTimeoutMs: parsed.REDIS_COMMAND_TIMEOUT_MS,
    jwt: {
      secret: parsed.JWT_SECRET,
      publicKey: parsed.JWT_PUBLIC_KEY,
      publicKeyAlgorithm: parsed.JWT_PUBLIC_KEY_ALGORITHM,
      jwksFile: parsed.JWT_JWKS_FILE,
      jwksReloadIntervalMs: parsed.JWT_JWKS_RELOAD_INTERVAL_MS,
      issuer: parsed.JWT_ISSUER,
      audience: parsed.JWT_AUDIENCE,
    },
    pageTokenSecret: parsed.PAGE_TOKEN_SECRET ?? `derived:${parsed.JWT_SECRET}`,
    rateLimit: { points: parsed.RATE_LIMIT_POINTS, windowSeconds: parsed.RATE_LIMIT_WINDOW_SECONDS },
    cacheTtlSeconds: {
      patient: parsed.PATIENT_CACHE_TTL_SECONDS,
      query: parsed.QUERY_CACHE_TTL_SECONDS,
      session: parsed.SESSION_TTL_SECONDS,
    },
    idempotencyRetentionHours: parsed.IDEMPOTENCY_RETENTION_HOURS,
    accessAudit: {
      enabled: parsed.ACCESS_AUDIT === 'on',
      flushIntervalMs: parsed.ACCESS_AUDIT_FLUSH_MS,
      maxPendingEvents: parsed.ACCESS_AUDIT_MAX_PENDING,
      refusalsPerSourcePerMinute: parsed.REFUSAL_AUDIT_PER_MINUTE,
    },
    shutdownDrainMs: parsed.SHUTDOWN_DRAIN_MS,
    shutdownGraceMs: parsed.SHUTDOWN_GRACE_MS,
    maxInFlightCost: parsed.MAX_IN_FLIGHT_COST,
    connectionLimits: {
      maxReceiveMessageBytes: parsed.GRPC_MAX_RECEIVE_MESSAGE_BYTES,
      maxMetadataBytes: parsed.GRPC_MAX_METADATA_BYTES,
      maxConcurrentStreams: parsed.GRPC_MAX_CONCURRENT_STREAMS,
      maxConnections: parsed.GRPC_MAX_CONNECTIONS,
      keepalive: {
        timeMs: parsed.GRPC_KEEPALIVE_TIME_MS,
        timeoutMs: parsed.GRPC_KEEPALIVE_TIMEOUT_MS,
        minPingIntervalMs: parsed.GRPC_KEEPALIVE_MIN_PING_INTERVAL_MS,
        maxPingStrikes: parsed.GRPC_KEEPALIVE_MAX_PING_STRIKES,
      },
      maxConnectionIdleMs: parsed.GRPC_MAX_CONNECTION_IDLE_MS,
      maxConnectionAgeMs: parsed.GRPC_MAX_CONNECTION_AGE_MS,
      maxConnectionAgeGraceMs: parsed.GRPC_MAX_CONNECTION_AGE_GRACE_MS,
    },
    logLevel: parsed.LOG_LEVEL,
  };
}
