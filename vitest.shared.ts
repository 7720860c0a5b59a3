import { defineConfig } from 'vitest/config';

const TEST_FILES = ['src/**/*.test.ts', 'test/**/*.test.ts'];

/**
 * Test settings every project shares. Integration tests talk to a real
 * PostgreSQL and Redis found by the project's global setup
 * (`vitest.global-setup.ts`, built on @clinical/testing).
 *
 * `redisClusterFiles` run a second time, against a Redis Cluster of three
 * masters and three replicas that the global setup starts for that run (the
 * `redis-cluster` project; the files' clients find it through
 * @clinical/testing's testRedisTarget and startTestService).
 */
export function projectTestConfig(options: { globalSetup?: string[]; setupFiles?: string[]; redisClusterFiles?: string[] } = {}) {
  return defineConfig({
    test: {
      environment: 'node',
      pool: 'forks',
      globalSetup: options.globalSetup ?? [],
      setupFiles: options.setupFiles ?? [],
      testTimeout: 30_000,
      hookTimeout: 120_000,
      reporters: ['default'],
      ...(options.redisClusterFiles
        ? {
            // Projects extending this config would add their include to the root's, not replace it: the root has none.
            projects: [
              { extends: true, test: { name: 'redis', include: TEST_FILES, provide: { redisTopology: 'single' } } },
              { extends: true, test: { name: 'redis-cluster', include: options.redisClusterFiles, provide: { redisTopology: 'cluster' } } },
            ],
          }
        : { include: TEST_FILES }),
    },
  });
}
