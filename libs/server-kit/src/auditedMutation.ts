import { runIdempotent, withAuditContext, type DatabaseTransactionConnection, type ResponseCodec } from '@clinical/db';
import type { HandlerContext } from './middleware/authentication.js';
import { auditContextOf, idempotencyKeyOf } from './requestContext.js';
import type { ServiceRuntime } from './server/startService.js';

/** A generated message type's encode/decode (ts-proto's MessageFns). */
interface MessageFns<Message> {
  encode(message: Message): { finish(): Uint8Array };
  decode(input: Uint8Array): Message;
}

/** The bytes codec of a generated message type, for idempotent responses and cache entries. */
export function messageCodec<Message>(type: MessageFns<Message>): ResponseCodec<Message> {
  return { encode: (message) => type.encode(message).finish(), decode: (bytes) => type.decode(bytes) };
}

export interface MutationOptions<Response> {
  /** The caller's request_id ('' for none). */
  readonly requestId: string;
  /** Why the change is made, for the audit trail. */
  readonly reason?: string;
  /** The request encoded without its request_id: a reused id with another request is refused. */
  readonly requestWithoutId: () => Uint8Array;
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
export async function runAuditedMutation<Response>(
  runtime: ServiceRuntime,
  context: HandlerContext,
  options: MutationOptions<Response>,
  perform: (transaction: DatabaseTransactionConnection) => Promise<Response>,
): Promise<Response> {
  const key = idempotencyKeyOf(context, options.requestId, options.requestWithoutId);
  return withAuditContext(
    runtime.pool,
    auditContextOf(context, { requestId: options.requestId, reason: options.reason }),
    (transaction) => runIdempotent(transaction, key, options.responseCodec, () => perform(transaction)),
  );
}
