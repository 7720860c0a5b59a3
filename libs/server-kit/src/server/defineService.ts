import type { ServerAddBuilder, ServiceImplementation, TsProtoServiceDefinition } from 'nice-grpc';
import type { Role } from '../auth/principal.js';
import type { AuthenticatedContext } from '../middleware/authentication.js';
import { withEncodedResponses } from './encodedResponses.js';
import { refusingMalformedRequests, withTolerantDecoding } from './malformedRequests.js';

/** Who may call a method and what it costs against the caller's rate limit. */
export interface MethodPolicy {
  readonly roles: readonly Role[];
  /** Rate-limit points a call spends: 1 for a point read, more for lists and bulk writes. */
  readonly cost: number;
}

/** A policy for each method of a generated service definition, by its client method name. */
export type MethodPolicyTable<Definition extends Pick<TsProtoServiceDefinition, 'methods'>> = {
  readonly [Method in keyof Definition['methods']]: MethodPolicy;
};

/** Policies by full method path (`/pkg.Service/Method`). */
export type MethodPolicies = ReadonlyMap<string, MethodPolicy>;

/** A service ready to serve: its handlers, and a policy for each of its methods. */
export interface ServiceBinding {
  readonly fullName: string;
  readonly policies: MethodPolicies;
  addTo(server: ServerAddBuilder<AuthenticatedContext>): void;
}

/**
 * Binds a generated service definition to its handlers and to the policy of
 * each method. The policy map must name every method: the compiler checks it.
 */
export function defineService<Definition extends TsProtoServiceDefinition>(
  definition: Definition,
  implementation: ServiceImplementation<Definition, AuthenticatedContext>,
  policies: MethodPolicyTable<Definition>,
): ServiceBinding {
  const byPath = new Map<string, MethodPolicy>();
  for (const [key, method] of Object.entries(definition.methods)) {
    byPath.set(`/${definition.fullName}/${method.name}`, policies[key as keyof Definition['methods']]);
  }
  return {
    fullName: definition.fullName,
    policies: byPath,
    addTo(server) {
      server.add(withEncodedResponses(withTolerantDecoding(definition)), refusingMalformedRequests(definition, implementation));
    },
  };
}
