import { runIdempotent, withAuditContext, type DatabaseTransactionConnection, type ResponseCodec } from '@clinical/db';
import type { MessageFns } from './messages/canonicalForm.js';
import type { HandlerContext } from './middleware/authentication.js';
import { auditContextOf, idempotencyKeyOf } from './requestContext.js';
import type { ServiceRuntime } from './server/startService.js';

/** The bytes codec of a generated message type, for idempotent responses and cache entries. */
export function messageCodec<Message>(type: MessageFns<Message>): ResponseCodec<Message> {
  return { encode: (message) => type.encode(message).finish(), decode: (bytes) => type.decode(bytes) };
}

export interface MutationOptions<Request extends { requestId: string }, Response> {
  /** The request: its request_id ('' for none) keys retries, and its content must match the first one's. */
  readonly request: Request;
  /** The request's generated type, to compare a retry with the first request in canonical form. */
  readonly requestType: MessageFns<Request>;
  /** Why the change is made, for the audit trail. */
  readonly reason?: string;
  /** How the first response is kept for retries. */
  readonly responseCodec: ResponseCodec<Response>;
}

/**
 * Runs a write the way every mutation must: in one transaction that first
 * sets the audit context (actor, request, trace, reason), idempotent on the
 * caller's request_id (a retry gets the first response). `perform` may be run
 * again on a serialization failure: keep side effects out of it, and write
 * caches after this returns.
 */
export async function runAuditedMutation<Request extends { requestId: string }, Response>(
  runtime: ServiceRuntime,
  context: HandlerContext,
  options: MutationOptions<Request, Response>,
  perform: (transaction: DatabaseTransactionConnection) => Promise<Response>,
): Promise<Response> {
  const key = idempotencyKeyOf(context, options.request, options.requestType);
  return withAuditContext(
    runtime.pool,
    auditContextOf(context, { requestId: options.request.requestId, reason: options.reason }),
    (transaction) => runIdempotent(transaction, key, options.responseCodec, () => perform(transaction)),
  );
}
