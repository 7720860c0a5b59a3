import { defineConfig } from 'vitest/config';

/**
 * One scenario at a time: each starts its own PostgreSQL, redis-server and
 * four service processes, and the machine has two cores. Every wait inside
 * a scenario is bounded by its own deadline; these outer bounds only stop a
 * run that is stuck.
 */
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 1_200_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
