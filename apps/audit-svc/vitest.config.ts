import { projectTestConfig } from '../../vitest.shared.js';

export default projectTestConfig({
  globalSetup: ['./vitest.global-setup.ts'],
  setupFiles: ['@clinical/testing/telemetry-setup'],
  redisClusterFiles: ['src/sessions/sessionService.test.ts'],
});
