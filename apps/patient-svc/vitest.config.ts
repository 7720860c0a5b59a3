import { projectTestConfig } from '../../vitest.shared.js';

export default projectTestConfig({
  globalSetup: ['./vitest.global-setup.ts'],
  setupFiles: ['@clinical/testing/telemetry-setup'],
  redisClusterFiles: ['src/patients/storedPatientData.test.ts', 'src/patients/createAndGetPatient.test.ts', 'src/patients/updatePatient.test.ts'],
});
