export { clientOn, startTestService, TEST_JWT_SECRET, type TestService } from './startTestService.js';
export { serviceBootSuite, type ReflectedCall } from './serviceBootSuite.js';
export { expectStatus } from './expectStatus.js';
export { sendRawRequests } from './corruptRequests.js';
export { expectRetriesIndependentOfWireOrder, inAnotherWireOrder, withFieldsReordered, withMapEntriesReversed } from './wireOrder.js';
