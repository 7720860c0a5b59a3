export { ConfigError, loadConfig } from './config/loadConfig.js';
export {
  loadServiceConfig,
  SERVICE_PROCESS_ARGUMENTS,
  SERVICES,
  type ServiceConfig,
  type ServiceName,
} from './config/serviceConfig.js';
export {
  accessibleSites,
  canAccessSite,
  requireRole,
  ROLES,
  type Principal,
  type Role,
} from './auth/principal.js';
export { createTokenVerifier, mintToken, type MintTokenOptions, type TokenVerifier } from './auth/tokens.js';
export { openSession, type NewSession, type SessionStore } from './auth/sessions.js';
export type { AuthenticatedContext, HandlerContext } from './middleware/authentication.js';
export { defineService, type MethodPolicy, type MethodPolicyTable, type ServiceBinding } from './server/defineService.js';
export { withEncoding } from './server/encodedResponses.js';
export { startService, type RunningService, type ServiceModule, type ServiceRuntime } from './server/startService.js';
export { runServiceMain } from './server/runServiceMain.js';
export { answeringConsistencyToken, CONSISTENCY_TOKEN_METADATA, readFromReplica } from './server/replicaConsistency.js';
export {
  accessEventsOf,
  auditContextOf,
  clientIpOf,
  idempotencyKeyOf,
  type AccessedEntity,
} from './requestContext.js';
export {
  FieldValidator,
  formatCivilDate,
  parseCivilDate,
  todayUtc,
  type CivilDate,
  type StringRule,
} from './validation/fieldValidator.js';
export { checkJsonDocument, type JsonDocumentRule } from './validation/jsonDocuments.js';
export { notYetServed } from './server/notYetServed.js';
export { createPageTokenCodec, pageSizeOf, type Cursor, type PageTokenCodec } from './pagination/pageTokens.js';
export { fitPage, RESPONSE_BUDGET_BYTES, type FittedPage } from './pagination/responseBudget.js';
export { messageCodec, runAuditedMutation, type MutationOptions } from './auditedMutation.js';
export { canonicalRequestBytes, withMapEntriesInKeyOrder, type MessageFns } from './messages/canonicalForm.js';
