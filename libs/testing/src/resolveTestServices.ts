import pg from 'pg';
import { Redis } from 'ioredis';

/** Where the tests' PostgreSQL and Redis are. */
export interface TestServices {
  /** Admin connection URL (may create databases and roles). */
  readonly postgresUrl: string;
  readonly redisUrl: string;
  /** How they were found, for the run's first line. */
  readonly source: 'environment' | 'testcontainers' | 'local';
  /** Stops what this run started (containers); a no-op otherwise. */
  stop(): Promise<void>;
}

const LOCAL_POSTGRES = 'postgres://postgres@127.0.0.1:5432/postgres';
const LOCAL_REDIS = 'redis://127.0.0.1:6379';

async function postgresAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function redisAnswers(url: string): Promise<boolean> {
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

async function containerRuntimeAnswers(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

async function startContainers(): Promise<TestServices> {
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const { RedisContainer } = await import('@testcontainers/redis');
  const [postgres, redis] = await Promise.all([
    // Trust auth, as on the local server: the services' roles log in without passwords.
    new PostgreSqlContainer('postgres:15').withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' }).start(),
    new RedisContainer('redis:7').start(),
  ]);
  return {
    postgresUrl: postgres.getConnectionUri(),
    redisUrl: redis.getConnectionUrl(),
    source: 'testcontainers',
    async stop() {
      await Promise.all([postgres.stop(), redis.stop()]);
    },
  };
}

/**
 * Finds a real PostgreSQL and Redis for the tests, in this order:
 * TEST_DATABASE_URL / TEST_REDIS_URL; containers, when a container runtime
 * answers; the services on 127.0.0.1:5432 and :6379. Never a stand-in.
 * @throws Error saying how to provide them when none answers.
 */
export async function resolveTestServices(env: NodeJS.ProcessEnv = process.env): Promise<TestServices> {
  const noop = async () => {};
  if (env.TEST_DATABASE_URL || env.TEST_REDIS_URL) {
    if (!env.TEST_DATABASE_URL || !env.TEST_REDIS_URL) {
      throw new Error('set both TEST_DATABASE_URL and TEST_REDIS_URL, or neither');
    }
    return { postgresUrl: env.TEST_DATABASE_URL, redisUrl: env.TEST_REDIS_URL, source: 'environment', stop: noop };
  }
  if (env.TESTCONTAINERS !== 'off' && (await containerRuntimeAnswers())) {
    return startContainers();
  }
  const [postgresUp, redisUp] = await Promise.all([postgresAnswers(LOCAL_POSTGRES), redisAnswers(LOCAL_REDIS)]);
  if (postgresUp && redisUp) {
    return { postgresUrl: LOCAL_POSTGRES, redisUrl: LOCAL_REDIS, source: 'local', stop: noop };
  }
  throw new Error(
    [
      'The tests need a real PostgreSQL 15 and Redis 7, and found none:',
      `  PostgreSQL at 127.0.0.1:5432: ${postgresUp ? 'up' : 'not answering'}; Redis at 127.0.0.1:6379: ${redisUp ? 'up' : 'not answering'}.`,
      'Provide them one of these ways:',
      '  - set TEST_DATABASE_URL (admin URL, trust auth for the service roles) and TEST_REDIS_URL;',
      '  - run a Docker engine, and the tests start postgres:15 and redis:7 containers;',
      '  - start local servers, e.g. `pg_ctlcluster 15 main start` and',
      '    `redis-server --daemonize yes --port 6379 --save "" --appendonly no`.',
    ].join('\n'),
  );
}
