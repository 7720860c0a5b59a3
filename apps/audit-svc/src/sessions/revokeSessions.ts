import type { sessionV1 } from '@clinical/contracts';
import { withAuditContext } from '@clinical/db';
import { NotFoundError, UnavailableError } from '@clinical/errors';
import { auditContextOf, FieldValidator, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { endedSessionsOf, revokeAllOf, revokeOne } from './sessionQueries.js';
import { REASON, SESSION_ID, toSessionMessage, USER } from './sessionRecord.js';

/**
 * After the revocation committed, every service must see it on its next
 * call: the session cache (Redis) is told. Should that fail, the revocation
 * holds in PostgreSQL, but a cached "live" could outlast it: the caller is
 * told to retry, which is safe.
 */
async function tellTheCache(runtime: ServiceRuntime, sids: readonly string[]): Promise<void> {
  try {
    await runtime.sessions.forget(sids);
  } catch (error) {
    throw new UnavailableError('the sessions are ended, but the session cache could not be told yet: retry the call', { cause: error });
  }
}

/** RevokeSession: ends one session (audited, with the reason), then tells the cache. */
export function revokeSessionHandler(runtime: ServiceRuntime) {
  return async function revokeSession(request: sessionV1.RevokeSessionRequest, context: HandlerContext): Promise<sessionV1.RevokeSessionResponse> {
    const v = new FieldValidator();
    v.string('session_id', request.sessionId, SESSION_ID);
    v.string('reason', request.reason, REASON);
    v.throwIfInvalid();
    const row = await withAuditContext(runtime.pool, auditContextOf(context, { reason: request.reason }), (transaction) =>
      revokeOne(transaction, request.sessionId, context.principal.sub, request.reason),
    );
    if (!row) {
      throw new NotFoundError('session', request.sessionId);
    }
    await tellTheCache(runtime, [row.sid]);
    return { session: toSessionMessage(row) };
  };
}

/** RevokeUserSessions: ends every live session of a user (audited, with the reason), then tells the cache. */
export function revokeUserSessionsHandler(runtime: ServiceRuntime) {
  return async function revokeUserSessions(
    request: sessionV1.RevokeUserSessionsRequest,
    context: HandlerContext,
  ): Promise<sessionV1.RevokeUserSessionsResponse> {
    const v = new FieldValidator();
    v.string('user', request.user, USER);
    v.string('reason', request.reason, REASON);
    v.throwIfInvalid();
    const { revoked, ended } = await withAuditContext(runtime.pool, auditContextOf(context, { reason: request.reason }), async (transaction) => {
      const newlyRevoked = await revokeAllOf(transaction, request.user, context.principal.sub, request.reason);
      return { revoked: newlyRevoked, ended: await endedSessionsOf(transaction, request.user) };
    });
    // Every ended session, not only those this call ended: a retry after the cache could not be told
    // revokes nothing new, and must still tell it of the sessions the first call ended.
    await tellTheCache(runtime, ended);
    return { revokedCount: String(revoked.length) };
  };
}
