import { projectTestConfig } from '../../vitest.shared.js';

// Unit tests only: no database, no Redis, no telemetry started beforehand.
export default projectTestConfig();
