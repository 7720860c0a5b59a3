import type { TestProject } from 'vitest/node';
import { startRedisCluster } from './redisCluster.js';
import { resolveTestServices } from './resolveTestServices.js';
import { createTemplateDatabase } from './testDatabases.js';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string;
    redisUrl: string;
    templateDatabase: string;
    /** 'cluster' in a project that runs its files against a Redis Cluster (vitest.shared.ts); set by the project's config. */
    redisTopology?: 'single' | 'cluster';
    /** host:port of that cluster's nodes, when the project asked for one. */
    redisClusterNodes?: readonly string[];
  }
}

/**
 * A vitest globalSetup: finds PostgreSQL and Redis, builds the migrated
 * template once, and hands both to the test files (`inject`); in a project
 * that asks for a Redis Cluster, starts one of its own for the run. `migrate` comes
 * from the caller so that this library depends on no other.
 */
export function setupTestEnvironment(options: { migrate: (options: { databaseUrl: string }) => Promise<unknown> }) {
  return async function setup(project: TestProject): Promise<() => Promise<void>> {
    const services = await resolveTestServices();
    const templateDatabase = await createTemplateDatabase(services.postgresUrl, options.migrate);
    project.provide('postgresUrl', services.postgresUrl);
    project.provide('redisUrl', services.redisUrl);
    project.provide('templateDatabase', templateDatabase);
    const cluster = project.config.provide?.redisTopology === 'cluster' ? await startRedisCluster() : undefined;
    if (cluster) {
      project.provide('redisClusterNodes', cluster.nodes);
    }
    return async () => {
      await cluster?.remove();
      await services.stop();
    };
  };
}
