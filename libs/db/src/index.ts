export { sql, type DatabasePool, type DatabaseTransactionConnection, type CommonQueryMethods } from 'slonik';
export { createDatabasePool, type DatabasePoolOptions } from './createDatabasePool.js';
export { databaseConnection, DatabaseUrlError, tlsMisconfiguration, type DatabaseConnection } from './connectionTls.js';
export { rowSchema } from './rowSchema.js';
export { withAuditContext, type AuditContext } from './withAuditContext.js';
export { mapDatabaseError } from './mapDatabaseError.js';
export {
  createAccessRecorder,
  type AccessEvent,
  type AccessRecorder,
  type AccessRecorderOptions,
  type AccessRecorderStats,
} from './accessAudit/createAccessRecorder.js';
export { migrate, type MigrateOptions } from './migrate.js';
export { runIdempotent, type IdempotencyKey, type ResponseCodec } from './idempotency.js';
export { copyRows, copyText, COPY_NULL, type CopyData, type CopyRowsOptions } from './copyRows.js';
export { BinaryRowWriter } from './binaryRowWriter.js';
export { copyOutRows, uuidText, type CopyRowHandler } from './copyOutRows.js';
export { withAuditedClient } from './withAuditedClient.js';
export { claimRequestId, saveIdempotentResponse, type RequestIdentity, type StoredResponse } from './idempotentClientRequests.js';
export { purgeExpiredIdempotentRequests } from './purgeExpiredIdempotentRequests.js';
export { createReplicaReads, isConsistencyToken, type ReplicaReads, type ReplicaReadsOptions } from './replicaReads.js';
