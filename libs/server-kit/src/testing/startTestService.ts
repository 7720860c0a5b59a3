import { randomUUID } from 'node:crypto';
import { createTestDatabase, testServices, uniqueKeyPrefix, type TestDatabase } from '@clinical/testing';
import type { RedisClient } from '@clinical/cache';
import { createDatabasePool, type DatabasePool } from '@clinical/db';
import { openSession } from '../auth/sessions.js';
import { createChannel, createClient, Metadata, type Channel, type Client, type CompatServiceDefinition } from 'nice-grpc';
import type { Principal } from '../auth/principal.js';
import { mintToken } from '../auth/tokens.js';
import { loadServiceConfig, SERVICES, type ServiceConfig } from '../config/serviceConfig.js';
import { startService, type RunningService, type ServiceModule } from '../server/startService.js';

export const TEST_JWT_SECRET = 'test-secret-of-at-least-thirty-two-characters';

/** A service started for one test file: its own database, its own Redis key prefix, a real port. */
export interface TestService {
  readonly running: RunningService;
  readonly database: TestDatabase;
  readonly config: ServiceConfig;
  readonly address: string;
  readonly channel: Channel;
  /** The service's Redis client; throws when it keeps its state in process (STATE_STORE=memory). */
  readonly redis: RedisClient;
  /** Mints a token for these claims and opens its session. */
  token(claims: Partial<Omit<Principal, 'sid'>>): Promise<string>;
  /** Opens a session in the service's database, as the issuing side does (for tokens a test mints itself). */
  openSession(sid: string, sub: string): Promise<void>;
  /** A client of `definition` over the service's channel, sending `token` (if any) on every call. */
  client<Definition extends CompatServiceDefinition>(definition: Definition, token?: string): Client<Definition>;
  stop(): Promise<void>;
}

/** A client of `definition` over `channel`, sending `token` (if any) on every call. */
export function clientOn<Definition extends CompatServiceDefinition>(channel: Channel, definition: Definition, token?: string): Client<Definition> {
  const metadata = token ? Metadata({ authorization: `Bearer ${token}` }) : Metadata();
  return createClient(definition, channel, { '*': { metadata } });
}

/**
 * Starts `module` on 127.0.0.1 port 0 against a fresh database cloned from
 * the migrated template and the test Redis (the project's cluster in the
 * redis-cluster project, or the cluster `env` names; keys under a unique prefix), or
 * no Redis at all when `env` says STATE_STORE=memory.
 */
export async function startTestService(module: ServiceModule, env: Record<string, string> = {}): Promise<TestService> {
  const { postgresUrl, redisUrl, redisClusterNodes, templateDatabase } = testServices();
  const database = await createTestDatabase(postgresUrl, templateDatabase);
  const prefix = SERVICES[module.name].envPrefix;
  const config = loadServiceConfig(module.name, {
    DATABASE_URL: database.url,
    ...(env.STATE_STORE === 'memory' || env.REDIS_CLUSTER_NODES
      ? {}
      : redisClusterNodes
        ? { REDIS_CLUSTER_NODES: redisClusterNodes.join(',') }
        : { REDIS_URL: redisUrl }),
    REDIS_KEY_PREFIX: uniqueKeyPrefix(),
    JWT_SECRET: TEST_JWT_SECRET,
    GRPC_HOST: '127.0.0.1',
    [`${prefix}_PORT`]: '0',
    LOG_LEVEL: 'silent',
    SHUTDOWN_DRAIN_MS: '0',
    SHUTDOWN_GRACE_MS: '2000',
    ...env,
  });
  const running = await startService(module, config);
  // Sessions are opened with the owner's rights, as by the issuing side: the services may not.
  let owner: DatabasePool | undefined;
  const openSessionAsOwner = async (sid: string, sub: string) => {
    owner ??= await createDatabasePool({ connectionUri: (env.DATABASE_URL as string | undefined) ?? database.url, maximumPoolSize: 1 });
    await openSession(owner, { sid, sub, expiresAt: new Date(Date.now() + 3_600_000) });
  };
  const address = `127.0.0.1:${running.port}`;
  const channel = createChannel(address);
  return {
    running,
    database,
    config,
    address,
    channel,
    get redis() {
      if (!running.runtime.redis) {
        throw new Error(`${module.name} runs with STATE_STORE=memory: it has no Redis`);
      }
      return running.runtime.redis;
    },
    async token(claims) {
      const { token, sid } = await mintToken({
        secret: TEST_JWT_SECRET,
        issuer: config.jwt.issuer,
        audience: config.jwt.audience,
        sub: claims.sub ?? `user-${randomUUID().slice(0, 8)}`,
        roles: claims.roles ?? ['coordinator'],
        sites: claims.sites ?? ['SITE-A'],
      });
      await openSessionAsOwner(sid, claims.sub ?? 'test');
      return token;
    },
    openSession: openSessionAsOwner,
    client: (definition, token) => clientOn(channel, definition, token),
    async stop() {
      await running.stop();
      await owner?.end();
      channel.close();
      await database.drop();
    },
  };
}
