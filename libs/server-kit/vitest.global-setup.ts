import { migrate } from '@clinical/db';
import { setupTestEnvironment } from '@clinical/testing';

export default setupTestEnvironment({ migrate });
