import { isConsistencyToken, type DatabasePool } from '@clinical/db';
import { InvalidArgumentError } from '@clinical/errors';
import type { HandlerContext } from '../middleware/authentication.js';
import type { ServiceRuntime } from './startService.js';

/**
 * The metadata that carries a consistency token: a write answers with it (in
 * its trailing metadata) when the service reads from replicas, and a read that
 * sends it back is never answered from data older than that write.
 */
export const CONSISTENCY_TOKEN_METADATA = 'x-consistency-token';

/**
 * Runs `read` on a replica recent enough for the caller (its consistency
 * token, else the staleness bound), or on the primary; see ReplicaReads.
 * @throws InvalidArgumentError when the caller's token is not one a write returned.
 */
export function readFromReplica<T>(runtime: ServiceRuntime, context: HandlerContext, read: (pool: DatabasePool) => Promise<T>): Promise<T> {
  const token = context.metadata.get(CONSISTENCY_TOKEN_METADATA);
  if (token !== undefined && !isConsistencyToken(token)) {
    throw new InvalidArgumentError({ field: CONSISTENCY_TOKEN_METADATA, description: 'is not a consistency token returned by a write' });
  }
  return runtime.replicaReads.read(token, read);
}

/**
 * `handler`, a write, with its answers carrying the consistency token of what
 * had committed when it finished (trailing metadata), when the service reads
 * from replicas: a caller that sends the token back with its reads never reads
 * older than this write. Without replicas, `handler` itself.
 */
export function answeringConsistencyToken<Request, Response>(
  runtime: ServiceRuntime,
  handler: (request: Request, context: HandlerContext) => Promise<Response>,
): (request: Request, context: HandlerContext) => Promise<Response> {
  const { replicaReads } = runtime;
  if (!replicaReads.enabled) {
    return handler;
  }
  return async (request, context) => {
    const response = await handler(request, context);
    context.trailer.set(CONSISTENCY_TOKEN_METADATA, await replicaReads.tokenAfterWrite());
    return response;
  };
}
