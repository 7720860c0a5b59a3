import { defineConfig } from 'vitest/config';

/**
 * Test settings every project shares. Integration tests talk to a real
 * PostgreSQL and Redis found by the project's global setup
 * (`vitest.global-setup.ts`, built on @clinical/testing).
 */
export function projectTestConfig(options: { globalSetup?: string[]; setupFiles?: string[] } = {}) {
  return defineConfig({
    test: {
      include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
      environment: 'node',
      pool: 'forks',
      globalSetup: options.globalSetup ?? [],
      setupFiles: options.setupFiles ?? [],
      testTimeout: 30_000,
      hookTimeout: 120_000,
      reporters: ['default'],
    },
  });
}
