import { UnauthenticatedError } from '@clinical/errors';
import type { SessionStore } from '@clinical/cache';
import type { CallContext, ServerMiddleware } from 'nice-grpc';
import { requireRole, type Principal } from '../auth/principal.js';
import type { TokenVerifier } from '../auth/tokens.js';
import type { MethodPolicies } from '../server/defineService.js';

/** What handlers of authenticated services receive beside the request. */
export interface AuthenticatedContext {
  readonly principal: Principal;
  /** Full path of the called method, `/clinical.patient.v1.PatientService/GetPatient`. */
  readonly method: string;
}

export type HandlerContext = CallContext & AuthenticatedContext;

/**
 * Bearer-token authentication and role authorization: verifies the JWT,
 * checks that its session is live, then that one of the caller's roles may
 * call the method. A method without a policy is refused.
 */
export function authenticationMiddleware(options: {
  readonly verifyToken: TokenVerifier;
  readonly sessions: SessionStore;
  readonly policies: MethodPolicies;
}): ServerMiddleware<AuthenticatedContext> {
  return async function* authenticate(call, context) {
    const header = context.metadata.get('authorization');
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!match?.[1]) {
      throw new UnauthenticatedError('missing bearer token');
    }
    // A remembered token and a recently confirmed session answer without a
    // promise (nearly every call): under OpenTelemetry each await costs async-hook calls.
    const verified = options.verifyToken(match[1]);
    const principal = verified instanceof Promise ? await verified : verified;
    const active = options.sessions.isActive(principal.sid);
    if (!(typeof active === 'boolean' ? active : await active)) {
      throw new UnauthenticatedError('session expired or revoked');
    }
    const policy = options.policies.get(call.method.path);
    requireRole(principal, policy?.roles ?? []);
    return yield* call.next(call.request, { ...context, principal, method: call.method.path });
  };
}
