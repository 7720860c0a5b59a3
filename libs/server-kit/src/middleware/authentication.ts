import { PermissionDeniedError, UnauthenticatedError } from '@clinical/errors';
import type { CallContext } from 'nice-grpc';
import { requireRole, type Principal } from '../auth/principal.js';
import type { SessionStore } from '../auth/sessions.js';
import type { TokenVerifier } from '../auth/tokens.js';
import { clientIpOf } from '../requestContext.js';
import { PEER_IDENTITY_HEADER } from '../transport/transportSecurity.js';
import type { MethodPolicies } from '../server/defineService.js';

/** What handlers of authenticated services receive beside the request. */
export interface AuthenticatedContext {
  readonly principal: Principal;
  /** Full path of the called method, `/clinical.patient.v1.PatientService/GetPatient`. */
  readonly method: string;
}

export type HandlerContext = CallContext & AuthenticatedContext;

/** Authenticates and authorizes a call from its metadata, peer and method path, or throws. */
export type Authenticator = (call: Pick<CallContext, 'metadata' | 'peer'>, methodPath: string) => Promise<Principal>;

/** A call refused before its method ran, as the audit trail records it: never any token material. */
export interface CallRefusal {
  /** AUTHENTICATE: the credentials were refused; AUTHORIZE: the caller's roles do not allow the method. */
  readonly action: 'AUTHENTICATE' | 'AUTHORIZE';
  /** The refusal's message, one of a fixed few ('invalid token', 'requires one of the roles: …'). */
  readonly reason: string;
  /** The caller, when its token's signature held (or its certificate named it); else unknown. */
  readonly subject?: string;
  readonly method: string;
  readonly clientIp?: string;
}

/**
 * The `service` principal of a caller identified by its client certificate
 * alone (mutual TLS): every site, no session (it ends when its certificate is
 * no longer accepted or its identity is taken off the list).
 */
function servicePrincipal(identity: string): Principal {
  return { sub: identity, roles: ['service'], sites: '*', sid: `certificate:${identity}` };
}

/**
 * Bearer-token authentication and role authorization: verifies the JWT,
 * checks that its session is live, then that one of the caller's roles may
 * call the method. A call without a token whose client certificate names one
 * of `serviceIdentities` is that service. A method without a policy is
 * refused. Every refusal is told to `onRefused` before it is thrown.
 */
export function createAuthenticator(options: {
  readonly tokens: TokenVerifier;
  readonly sessions: SessionStore;
  readonly policies: MethodPolicies;
  readonly serviceIdentities?: ReadonlySet<string>;
  readonly onRefused?: (refusal: CallRefusal) => void;
}): Authenticator {
  type Call = Parameters<Authenticator>[0];
  // Declared once, not per call: nearly every call is admitted, and only a refusal needs them.
  const refuse = (call: Call, methodPath: string, error: UnauthenticatedError | PermissionDeniedError, subject?: string): never => {
    options.onRefused?.({
      action: error instanceof PermissionDeniedError ? 'AUTHORIZE' : 'AUTHENTICATE',
      reason: error.message,
      subject,
      method: methodPath,
      clientIp: clientIpOf(call),
    });
    throw error;
  };
  const authorize = (call: Call, methodPath: string, principal: Principal): Principal => {
    try {
      requireRole(principal, options.policies.get(methodPath)?.roles ?? []);
    } catch (error) {
      refuse(call, methodPath, error as PermissionDeniedError, principal.sub);
    }
    return principal;
  };
  return async function authenticate(call, methodPath) {
    const header = call.metadata.get('authorization');
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!match?.[1]) {
      const identity = options.serviceIdentities?.size ? call.metadata.get(PEER_IDENTITY_HEADER) : undefined;
      if (typeof identity === 'string' && options.serviceIdentities?.has(identity)) {
        return authorize(call, methodPath, servicePrincipal(identity));
      }
      return refuse(call, methodPath, new UnauthenticatedError('missing bearer token'));
    }
    // A remembered token answers without a promise (nearly every call): under
    // OpenTelemetry each await costs async-hook calls.
    let principal: Principal;
    try {
      const verified = options.tokens.verify(match[1]);
      principal = verified instanceof Promise ? await verified : verified;
    } catch (error) {
      if (error instanceof UnauthenticatedError) {
        refuse(call, methodPath, error);
      }
      throw error;
    }
    if (!(await options.sessions.isActive(principal.sid))) {
      refuse(call, methodPath, new UnauthenticatedError('session expired or revoked'), principal.sub);
    }
    return authorize(call, methodPath, principal);
  };
}
