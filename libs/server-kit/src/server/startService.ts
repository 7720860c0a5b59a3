import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import {
  createCache,
  createCircuitBreaker,
  createMemoryCache,
  createNearCache,
  createRateLimiter,
  createRedisClient,
  type Cache,
  type CircuitBreaker,
  type RateLimiter,
  type RedisClient,
  waitForRedis,
} from '@clinical/cache';
import {
  createAccessRecorder,
  createDatabasePool,
  createReplicaReads,
  DatabaseUrlError,
  purgeExpiredIdempotentRequests,
  tlsMisconfiguration,
  type AccessRecorder,
  type DatabasePool,
  type ReplicaReads,
} from '@clinical/db';
import { createLogger, describeError, metricsStarted, type Logger } from '@clinical/telemetry';
import { createServer } from 'nice-grpc';
import { errorDetailsServerMiddleware } from 'nice-grpc-error-details';
import { HealthDefinition, HealthServiceImpl, HealthState } from 'nice-grpc-server-health';
import { createRefusalAudit } from '../auth/refusalAudit.js';
import { createStaleKeyJournal } from '../cache/staleKeyJournal.js';
import { createSessionStore, type SessionStore } from '../auth/sessions.js';
import { createTokenVerifier } from '../auth/tokens.js';
import { ConfigError } from '../config/loadConfig.js';
import type { ServiceConfig, ServiceName } from '../config/serviceConfig.js';
import { admissionMiddleware } from '../middleware/admission.js';
import { createInFlightLimit } from '../middleware/inFlightLimit.js';
import { createAuthenticator } from '../middleware/authentication.js';
import { edgeErrorMiddleware } from '../middleware/edgeErrors.js';
import { createCallCostSpender } from '../middleware/rateLimiting.js';
import { withConnectionLimits } from './connectionLimits.js';
import type { MethodPolicy, ServiceBinding } from './defineService.js';
import { withListenerLimits } from './listenerLimits.js';
import { addReflection } from './reflection.js';
import { createPageTokenCodec, type PageTokenCodec } from '../pagination/pageTokens.js';
import { createTransportSecurity } from '../transport/transportSecurity.js';
import { callTracingMiddleware } from '../telemetry/callTracing.js';
import { cacheNameOf, createCacheLookupTally, createCallMetrics, observeRuntime } from '../telemetry/serviceMetrics.js';

/** Everything a service's handlers may use, built once at start from the configuration. */
export interface ServiceRuntime {
  readonly config: ServiceConfig;
  readonly logger: Logger;
  /** The primary. */
  readonly pool: DatabasePool;
  /** Reads that may go to streaming replicas (DATABASE_REPLICA_URLS); through readFromReplica. */
  readonly replicaReads: ReplicaReads;
  /** Absent when the configuration keeps the state in process (STATE_STORE=memory). */
  readonly redis?: RedisClient;
  /** Shared by every Redis user of the process: one failure signal for all. */
  readonly breaker: CircuitBreaker;
  readonly cache: Cache;
  readonly sessions: SessionStore;
  readonly rateLimiter: RateLimiter;
  readonly accessRecorder: AccessRecorder;
  /** Seals and checks keyset page tokens. */
  readonly pageTokens: PageTokenCodec;
}

/** A deployable service: its name and the gRPC services it binds over the runtime. */
export interface ServiceModule {
  readonly name: ServiceName;
  createServices(runtime: ServiceRuntime): ServiceBinding[] | Promise<ServiceBinding[]>;
  /** Stops background work (timers, refresh jobs) after the last call finished. */
  stop?(runtime: ServiceRuntime): Promise<void>;
}

export interface RunningService {
  /** The bound port (useful when the configuration asked for port 0). */
  readonly port: number;
  readonly runtime: ServiceRuntime;
  /**
   * Reads the TLS certificate files and the JWKS file again (SIGHUP); says
   * which changed. New connections get the new certificates; tokens are
   * verified with the new keys from then on.
   */
  reloadKeys(): { readonly certificates: boolean; readonly tokenKeys: boolean };
  /**
   * Graceful stop: health turns NOT_SERVING for the drain period while calls
   * are still served, then new calls are refused and in-flight ones finish
   * (up to the shutdown grace, then they are cancelled), access events are
   * flushed, and the pools close.
   */
  stop(): Promise<void>;
}

/** Logs a recurring failure once per interval instead of once per call. */
function throttledWarning(logger: Logger, message: string, intervalMs = 10_000): (error?: unknown) => void {
  let lastLoggedAt = 0;
  return (error) => {
    const now = Date.now();
    if (now - lastLoggedAt >= intervalMs) {
      lastLoggedAt = now;
      logger.warn(error === undefined ? {} : { error: describeError(error) }, message);
    }
  };
}

/**
 * TLS options for Redis from the configured PEM files.
 * @throws ConfigError naming a file that cannot be read.
 */
function redisTlsOptions(files: ServiceConfig['redisTls']): ConnectionOptions | undefined {
  if (!files) {
    return undefined;
  }
  const read = (variable: string, file: string | undefined) => {
    if (!file) {
      return {};
    }
    try {
      return { [variable]: readFileSync(file) };
    } catch {
      throw new ConfigError([`REDIS_TLS_${variable.toUpperCase()}_FILE: cannot read ${file}`]);
    }
  };
  return { ...read('ca', files.caFile), ...read('cert', files.certFile), ...read('key', files.keyFile) };
}

/**
 * The process's Redis client. Redis trouble opens the breaker and is logged
 * (throttled); a Redis still away after a short wait does not stop the start.
 */
async function connectRedis(
  config: ServiceConfig,
  logger: Logger,
  breaker: CircuitBreaker,
  onTrouble: (error: unknown) => void,
): Promise<RedisClient> {
  const redis = createRedisClient({
    url: config.redisUrl,
    clusterNodes: config.redisClusterNodes,
    keyPrefix: config.redisKeyPrefix,
    commandTimeoutMs: config.redisCommandTimeoutMs,
    tls: redisTlsOptions(config.redisTls),
  });
  redis.on('error', (error) => {
    breaker.recordFailure();
    onTrouble(error);
  });
  if (!(await waitForRedis(redis, 3_000))) {
    logger.warn('redis not reachable at start; serving without it until it is');
  }
  return redis;
}

/**
 * The service's pool (which connects once, to learn the database's types). A
 * certificate refused, TLS the server will not speak, or TLS parameters that
 * cannot be honoured are configuration errors (exit 78, naming the reason).
 */
async function connectDatabase(config: ServiceConfig, url = config.databaseUrl, variable = 'DATABASE_URL'): Promise<DatabasePool> {
  try {
    return await createDatabasePool({
      connectionUri: url,
      maximumPoolSize: config.databasePoolSize,
      statementTimeoutMs: config.databaseStatementTimeoutMs,
    });
  } catch (error) {
    const misconfiguration = error instanceof DatabaseUrlError ? error.message : tlsMisconfiguration(error);
    throw misconfiguration ? new ConfigError([`${variable}: ${misconfiguration}`]) : error;
  }
}

/**
 * Reads over the replicas that answer at start (a misconfigured one stops the
 * service, as DATABASE_URL would; one that is down is left out, with a
 * warning, until the next start), else over the primary alone.
 */
async function connectReplicas(config: ServiceConfig, primary: DatabasePool, logger: Logger): Promise<ReplicaReads> {
  const replicas: DatabasePool[] = [];
  for (const [index, url] of config.databaseReplicaUrls.entries()) {
    try {
      replicas.push(await connectDatabase(config, url, 'DATABASE_REPLICA_URLS'));
    } catch (error) {
      if (error instanceof ConfigError) {
        throw error;
      }
      logger.warn({ replica: index, error: describeError(error) }, 'a database replica did not answer at start; reading without it');
    }
  }
  return createReplicaReads({
    primary,
    replicas,
    maxLagMs: config.replicaMaxLagMs,
    tokenWaitMs: config.replicaTokenWaitMs,
    onError: throttledWarning(logger, 'a database replica is unavailable; reading from the primary'),
  });
}

/**
 * The recorder when ACCESS_AUDIT=off: it records nothing. That exists only to
 * measure what auditing costs; a service running so says it loudly.
 */
function discardingAccessRecorder(logger: Logger): AccessRecorder {
  logger.warn('ACCESS_AUDIT=off: reads of patient data are NOT being audited (benchmarks only)');
  const stats = { recorded: 0, persisted: 0, pending: 0, failedFlushes: 0, maxPersistLagMs: 0 };
  return { record: () => {}, flush: async () => {}, close: async () => {}, stats: () => stats };
}

/** Builds the runtime and serves the module's services, health and reflection. */
export async function startService(module: ServiceModule, config: ServiceConfig): Promise<RunningService> {
  const logger = createLogger({ name: config.serviceName, level: config.logLevel });
  const pool = await connectDatabase(config);
  const replicaReads = await connectReplicas(config, pool, logger);
  const breaker = createCircuitBreaker();
  const redisTrouble = throttledWarning(logger, 'redis unavailable; serving without it');
  const redis = config.stateStore === 'redis' ? await connectRedis(config, logger, breaker, redisTrouble) : undefined;
  if (!redis) {
    logger.warn(
      'STATE_STORE=memory: cache and rate limits are kept in this process only, and every call asks ' +
        'PostgreSQL for its session (development only)',
    );
  }
  // Per-call measurements only when metrics were started (the API's no-op instruments would still cost a call each).
  const measuring = metricsStarted();
  const cacheLookups = measuring ? createCacheLookupTally() : undefined;
  const onLookup = cacheLookups && ((key: string, hit: boolean) => cacheLookups.count(cacheNameOf(key), hit));
  const onCacheLookup = cacheLookups && ((hit: boolean) => cacheLookups.count('session', hit));
  // Hot cache entries and session states are read from the process's own copies, which Redis keeps
  // coherent (client-side caching).
  const nearCache = redis && createNearCache({ redis, onError: redisTrouble });
  const runtime: ServiceRuntime = {
    config,
    logger,
    pool,
    replicaReads,
    redis,
    breaker,
    cache: redis
      ? createCache({ redis, breaker, nearCache, onError: redisTrouble, onLookup, journal: createStaleKeyJournal(pool) })
      : createMemoryCache({ onError: throttledWarning(logger, 'a value could not be cached; served without the cache'), onLookup }),
    sessions: createSessionStore({ pool, redis, nearCache, breaker, idleTimeoutSeconds: config.cacheTtlSeconds.session, onCacheLookup }),
    rateLimiter: createRateLimiter({
      redis,
      breaker,
      points: config.rateLimit.points,
      windowSeconds: config.rateLimit.windowSeconds,
    }),
    accessRecorder: config.accessAudit.enabled
      ? createAccessRecorder({
          pool,
          flushIntervalMs: config.accessAudit.flushIntervalMs,
          maxPendingEvents: config.accessAudit.maxPendingEvents,
          onFlushError: throttledWarning(logger, 'access audit flush failed; retrying'),
        })
      : discardingAccessRecorder(logger),
    pageTokens: createPageTokenCodec(config.pageTokenSecret, config.serviceName),
  };

  // Stored first responses of idempotent requests expire; every replica may purge (it is idempotent).
  const idempotencyPurge = setInterval(() => {
    purgeExpiredIdempotentRequests(pool, config.idempotencyRetentionHours).catch(
      throttledWarning(logger, 'purging expired idempotent requests failed; retrying later'),
    );
  }, 15 * 60_000);
  idempotencyPurge.unref();

  // The limiter is made once the services' policies are known; until then nothing is in flight.
  let inFlight = () => ({ calls: 0, cost: 0 });
  const stopObserving = observeRuntime({
    serviceName: config.serviceName,
    pool,
    accessRecorder: runtime.accessRecorder,
    inFlight: () => inFlight(),
    cacheLookups,
  });

  /** Stops the module's background work and closes what the runtime opened, after the last call. */
  const releaseRuntime = async () => {
    clearInterval(idempotencyPurge);
    stopObserving();
    await module.stop?.(runtime);
    await runtime.accessRecorder.close().catch((error: unknown) => {
      logger.error({ pending: runtime.accessRecorder.stats().pending, error: describeError(error) }, 'access events lost at shutdown');
    });
    // Last try at deleting cache entries a failed post-commit write left stale (forgetting them in
    // the journal takes the pool); those it cannot delete stay in the journal for the next process.
    await runtime.cache.close();
    await replicaReads.close().catch((error: unknown) => {
      logger.warn({ error: describeError(error) }, 'a statement was still running when a replica pool closed');
    });
    // A call cut off by the grace period may still have a statement running: slonik's end
    // rejects with that statement's error, which at this point is nothing but a log line.
    await pool.end().catch((error: unknown) => {
      logger.warn({ error: describeError(error) }, 'a statement was still running when the pool closed');
    });
    nearCache?.close();
    redis?.disconnect();
  };

  const bindings = await module.createServices(runtime);
  const policies = new Map<string, MethodPolicy>(bindings.flatMap((binding) => [...binding.policies]));
  // A method that costs more than a whole window (or the in-flight budget) could never be
  // called: refuse to start instead.
  const unaffordable = (variable: string, limit: number) => {
    const paths = [...policies].filter(([, policy]) => policy.cost > limit).map(([path]) => path);
    return paths.length > 0 ? [`${variable}: ${limit} is less than what one call of ${paths.join(', ')} costs`] : [];
  };
  const budgetProblems = [
    ...unaffordable('RATE_LIMIT_POINTS', config.rateLimit.points),
    ...unaffordable('MAX_IN_FLIGHT_COST', config.maxInFlightCost),
  ];
  if (budgetProblems.length > 0) {
    await releaseRuntime();
    throw new ConfigError(budgetProblems);
  }
  let tokens;
  try {
    tokens = await createTokenVerifier({ ...config.jwt, onKeysReloadFailure: throttledWarning(logger, 'the JWKS file could not be read again; verifying with the previous keys') });
  } catch (error) {
    await releaseRuntime();
    throw new ConfigError([`JWT_JWKS_FILE: ${(error as Error).message}`]);
  }
  let transport;
  try {
    transport = createTransportSecurity(config.tls, throttledWarning(logger, 'TLS certificate files could not be reloaded; serving the previous ones'));
  } catch (error) {
    await releaseRuntime();
    throw new ConfigError([`TLS_CERT_FILE, TLS_KEY_FILE, TLS_CLIENT_CA_FILE: ${(error as Error).message}`]);
  }

  const callMetrics = measuring ? createCallMetrics() : undefined;
  const inFlightLimit = createInFlightLimit({
    budget: config.maxInFlightCost,
    policies,
    onShed: throttledWarning(logger, 'overloaded: refusing calls past MAX_IN_FLIGHT_COST'),
    metrics: callMetrics,
  });
  inFlight = inFlightLimit.state;
  const health = HealthState();
  const server = withListenerLimits(
    createServer(
      withConnectionLimits(
        { ...transport.serverOptions, interceptors: [...(transport.serverOptions.interceptors ?? []), inFlightLimit.interceptor] },
        config.connectionLimits,
      ),
    )
      .use(callTracingMiddleware())
      .use(errorDetailsServerMiddleware)
      .use(inFlightLimit.middleware)
      .use(edgeErrorMiddleware(logger)),
    config.connectionLimits,
    logger,
  );
  server.add(HealthDefinition, HealthServiceImpl(health));
  addReflection(
    server,
    bindings.map((binding) => binding.fullName),
  );
  const authenticated = server.with(
    admissionMiddleware({
      authenticate: createAuthenticator({
        tokens,
        sessions: runtime.sessions,
        policies,
        serviceIdentities: new Set(config.tls?.serviceIdentities ?? []),
        onRefused: createRefusalAudit({
          recorder: runtime.accessRecorder,
          limiter: createRateLimiter({
            redis,
            breaker,
            points: config.accessAudit.refusalsPerSourcePerMinute,
            windowSeconds: 60,
            keyPrefix: 'refusals',
          }),
          onSuppressed: throttledWarning(logger, 'refused calls past their per-source audit limit are counted, not recorded one by one'),
        }),
      }),
      spendCallCost: createCallCostSpender({ limiter: runtime.rateLimiter, policies }),
      onRateLimited: callMetrics?.rateLimited,
    }),
  );
  for (const binding of bindings) {
    binding.addTo(authenticated);
  }

  // Entries a write could not invalidate before an earlier process stopped are not served.
  await runtime.cache.restoreStale();
  const port = await server.listen(`${config.host}:${config.port}`, transport.credentials);
  const setStatus = (status: 'healthy' | 'unhealthy') => {
    health.setStatus(status);
    for (const binding of bindings) {
      health.setStatus(status, binding.fullName);
    }
  };
  setStatus('healthy');

  let stopping: Promise<void> | undefined;
  return {
    port,
    runtime,
    reloadKeys: () => ({ certificates: transport.reloadCertificates(), tokenKeys: tokens.reloadKeys() }),
    stop() {
      stopping ??= (async () => {
        setStatus('unhealthy');
        await new Promise((resolve) => setTimeout(resolve, config.shutdownDrainMs));
        let graceTimer: NodeJS.Timeout | undefined;
        await Promise.race([
          server.shutdown(),
          new Promise<void>((resolve) => {
            graceTimer = setTimeout(() => {
              server.forceShutdown();
              resolve();
            }, config.shutdownGraceMs);
          }),
        ]);
        clearTimeout(graceTimer);
        transport.close();
        tokens.close();
        await releaseRuntime();
      })();
      return stopping;
    },
  };
}
