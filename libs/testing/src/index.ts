export { resolveTestServices, type TestServices } from './resolveTestServices.js';
export { createTemplateDatabase, createTestDatabase, type TestDatabase } from './testDatabases.js';
export { setupTestEnvironment } from './setupTestEnvironment.js';
export { testServices, uniqueKeyPrefix } from './testContext.js';
export { recordedSpans } from './recordedSpans.js';
export { seededRandom } from './seededRandom.js';
export { eventually } from './eventually.js';
export { createCertificateAuthority, type CertificateAuthority, type IssuedCertificate } from './certificates.js';
