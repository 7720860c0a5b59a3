import { projectTestConfig } from '../vitest.shared.js';

// These tests run `npm start` itself: it brings its own PostgreSQL and Redis.
export default projectTestConfig();
