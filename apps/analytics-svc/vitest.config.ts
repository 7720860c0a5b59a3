import { projectTestConfig } from '../../vitest.shared.js';

export default projectTestConfig({
  globalSetup: ['./vitest.global-setup.ts'],
  setupFiles: ['@clinical/testing/telemetry-setup'],
  redisClusterFiles: ['src/refresh/currentRefresh.test.ts', 'src/siteAnalytics/getSiteAnalytics.test.ts', 'src/twoReplicas.test.ts'],
});
