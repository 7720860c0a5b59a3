import { createDatabasePool, migrate } from '@clinical/db';
import { mintToken, openSession, type Principal } from '@clinical/server-kit';
import {
  createTemplateDatabase,
  createTestDatabase,
  resolveTestServices,
  uniqueKeyPrefix,
  type TestDatabase,
} from '@clinical/testing';

const JWT_SECRET = 'bench-secret-of-at-least-thirty-two-characters';

/**
 * What a benchmark runs against: a fresh database cloned from the migrated
 * template on the same PostgreSQL and Redis the tests use, and the settings
 * the service processes need to reach them.
 */
export interface BenchEnvironment {
  readonly database: TestDatabase;
  /** Environment variables for a service process. */
  readonly serviceEnv: Record<string, string>;
  /** Mints a token and opens its session, as `npm run token` does. */
  token(claims: Pick<Principal, 'roles' | 'sites'> & { sub?: string }): Promise<string>;
  close(): Promise<void>;
}

export async function createBenchEnvironment(): Promise<BenchEnvironment> {
  const services = await resolveTestServices();
  const template = await createTemplateDatabase(services.postgresUrl, migrate);
  const database = await createTestDatabase(services.postgresUrl, template);
  const keyPrefix = uniqueKeyPrefix();
  const owner = await createDatabasePool({ connectionUri: database.url, maximumPoolSize: 1 });
  return {
    database,
    serviceEnv: {
      DATABASE_URL: database.url,
      REDIS_URL: services.redisUrl,
      REDIS_KEY_PREFIX: keyPrefix,
      JWT_SECRET,
      OTEL_TRACES_EXPORTER: 'none',
      // The load generator is one caller; a benchmark measures the service, not the limiter's refusals.
      RATE_LIMIT_POINTS: '100000000',
    },
    async token(claims) {
      const sub = claims.sub ?? 'bench';
      const { token, sid } = await mintToken({
        secret: JWT_SECRET,
        issuer: 'clinical-platform',
        audience: 'clinical-data-services',
        sub,
        roles: claims.roles,
        sites: claims.sites,
      });
      await openSession(owner, { sid, sub, expiresAt: new Date(Date.now() + 3_600_000) });
      return token;
    },
    async close() {
      await owner.end();
      await database.drop();
      await services.stop();
    },
  };
}
