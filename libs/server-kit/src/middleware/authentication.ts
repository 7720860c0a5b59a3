import { UnauthenticatedError } from '@clinical/errors';
import type { CallContext, Metadata } from 'nice-grpc';
import { requireRole, type Principal } from '../auth/principal.js';
import type { SessionStore } from '../auth/sessions.js';
import type { TokenVerifier } from '../auth/tokens.js';
import { PEER_IDENTITY_HEADER } from '../transport/transportSecurity.js';
import type { MethodPolicies } from '../server/defineService.js';

/** What handlers of authenticated services receive beside the request. */
export interface AuthenticatedContext {
  readonly principal: Principal;
  /** Full path of the called method, `/clinical.patient.v1.PatientService/GetPatient`. */
  readonly method: string;
}

export type HandlerContext = CallContext & AuthenticatedContext;

/** Authenticates and authorizes a call from its metadata and method path, or throws. */
export type Authenticator = (metadata: Metadata, methodPath: string) => Promise<Principal>;

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
 * of `serviceIdentities` is that service. A method without a policy is refused.
 */
export function createAuthenticator(options: {
  readonly tokens: TokenVerifier;
  readonly sessions: SessionStore;
  readonly policies: MethodPolicies;
  readonly serviceIdentities?: ReadonlySet<string>;
}): Authenticator {
  return async function authenticate(metadata, methodPath) {
    const header = metadata.get('authorization');
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!match?.[1]) {
      const identity = options.serviceIdentities?.size ? metadata.get(PEER_IDENTITY_HEADER) : undefined;
      if (typeof identity === 'string' && options.serviceIdentities?.has(identity)) {
        const principal = servicePrincipal(identity);
        requireRole(principal, options.policies.get(methodPath)?.roles ?? []);
        return principal;
      }
      throw new UnauthenticatedError('missing bearer token');
    }
    // A remembered token answers without a promise (nearly every call): under
    // OpenTelemetry each await costs async-hook calls.
    const verified = options.tokens.verify(match[1]);
    const principal = verified instanceof Promise ? await verified : verified;
    if (!(await options.sessions.isActive(principal.sid))) {
      throw new UnauthenticatedError('session expired or revoked');
    }
    requireRole(principal, options.policies.get(methodPath)?.roles ?? []);
    return principal;
  };
}
