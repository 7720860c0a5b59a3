import { projectTestConfig } from '../../vitest.shared.js';

export default projectTestConfig({
  globalSetup: ['./vitest.global-setup.ts'],
  setupFiles: ['@clinical/testing/telemetry-setup'],
  redisClusterFiles: ['src/auth/sessions.test.ts', 'src/server/startService.test.ts'],
});
