import { setupTestEnvironment } from '@clinical/testing';
import { migrate } from './src/migrate.js';

export default setupTestEnvironment({ migrate });
