import type { TestProject } from 'vitest/node';
import { resolveTestServices } from './resolveTestServices.js';
import { createTemplateDatabase } from './testDatabases.js';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string;
    redisUrl: string;
    templateDatabase: string;
  }
}

/**
 * A vitest globalSetup: finds PostgreSQL and Redis, builds the migrated
 * template once, and hands both to the test files (`inject`). `migrate` comes
 * from the caller so that this library depends on no other.
 */
export function setupTestEnvironment(options: { migrate: (options: { databaseUrl: string }) => Promise<unknown> }) {
  return async function setup(project: TestProject): Promise<() => Promise<void>> {
    const services = await resolveTestServices();
    const templateDatabase = await createTemplateDatabase(services.postgresUrl, options.migrate);
    project.provide('postgresUrl', services.postgresUrl);
    project.provide('redisUrl', services.redisUrl);
    project.provide('templateDatabase', templateDatabase);
    return () => services.stop();
  };
}
