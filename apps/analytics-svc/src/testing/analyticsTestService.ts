import { startService, type RunningService, type ServiceModule } from '@clinical/server-kit';
import { clientOn, startTestService, type TestService } from '@clinical/server-kit/testing';
import { createChannel, type Channel, type Client, type CompatServiceDefinition } from 'nice-grpc';
import pg from 'pg';
import { loadAnalyticsConfig } from '../analyticsConfig.js';
import { createAnalyticsServiceModule } from '../analyticsServiceModule.js';

/** Settings every analytics test service gets: a small pool (the test server is shared), no rate limit in the way. */
const TEST_ENV = { DATABASE_POOL_SIZE: '4', RATE_LIMIT_POINTS: '1000000' };

/** An analytics-svc for one test file, its module built from `env` (ANALYTICS_* variables). */
export interface AnalyticsTestService extends TestService {
  readonly module: ServiceModule;
  /** A superuser connection to the test database, for fixtures and inspection. */
  readonly admin: pg.Client;
}

/** Starts analytics-svc on a fresh database (startTestService), with an admin connection to it. */
export async function startAnalyticsService(env: Record<string, string> = {}): Promise<AnalyticsTestService> {
  const module = createAnalyticsServiceModule(loadAnalyticsConfig(env));
  const service = await startTestService(module, { ...TEST_ENV, ...env });
  const admin = new pg.Client({ connectionString: service.database.url });
  await admin.connect();
  await admin.query("SET TimeZone = 'UTC'");
  const stopService = service.stop;
  // Extends the service object itself: a spread would read (and copy) its getters.
  return Object.assign(service, {
    module,
    admin,
    async stop() {
      await admin.end();
      await stopService();
    },
  });
}

/** A second instance of a running service: same database, same Redis prefix, its own port and pools. */
export interface Replica {
  readonly running: RunningService;
  readonly channel: Channel;
  client<Definition extends CompatServiceDefinition>(definition: Definition, token?: string): Client<Definition>;
  stop(): Promise<void>;
}

/**
 * Starts another replica of `primary` (startTestService always makes a new
 * database; a replica must share the primary's). Tokens minted by the
 * primary work here too: sessions live in the shared Redis prefix.
 */
export async function startReplica(primary: TestService, module: ServiceModule): Promise<Replica> {
  const running = await startService(module, { ...primary.config, port: 0 });
  const channel = createChannel(`127.0.0.1:${running.port}`);
  return {
    running,
    channel,
    client: (definition, token) => clientOn(channel, definition, token),
    async stop() {
      await running.stop();
      channel.close();
    },
  };
}

export { expectStatus } from '@clinical/server-kit/testing';

export { eventually } from '@clinical/testing';

/**
 * Holds ACCESS EXCLUSIVE on the change queue in an open transaction of its
 * own: every refresh consumes the queue, so it waits behind it, while reads
 * (which never touch the queue) go on.
 */
export async function blockRefreshes(databaseUrl: string): Promise<{ release(): Promise<void> }> {
  return lockTable(databaseUrl, 'analytics_pending_changes');
}

/** Holds an ACCESS EXCLUSIVE lock on `table` (every other use of it waits) until released. */
export async function lockTable(databaseUrl: string, table: string): Promise<{ release(): Promise<void> }> {
  const blocker = new pg.Client({ connectionString: databaseUrl });
  await blocker.connect();
  await blocker.query('BEGIN');
  await blocker.query(`LOCK TABLE ${pg.escapeIdentifier(table)} IN ACCESS EXCLUSIVE MODE`);
  let released = false;
  return {
    async release() {
      if (released) {
        return;
      }
      released = true;
      await blocker.query('ROLLBACK');
      await blocker.end();
    },
  };
}

/** The refresh log, oldest first. */
export async function refreshLog(admin: pg.Client): Promise<
  { refresh_id: string; status: string; trigger: string; started_at: Date; finished_at: Date; error: string | null; replica: string }[]
> {
  const { rows } = await admin.query(
    `SELECT refresh_id, status, trigger, started_at, finished_at, error, replica
       FROM analytics_refreshes WHERE trigger <> 'MIGRATION' ORDER BY refresh_id`,
  );
  return rows;
}
