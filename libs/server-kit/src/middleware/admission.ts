import { ResourceExhaustedError } from '@clinical/errors';
import type { ServerMiddleware } from 'nice-grpc';
import type { AuthenticatedContext, Authenticator } from './authentication.js';
import type { CallCostSpender } from './rateLimiting.js';

/**
 * Admits a call to an authenticated service: authenticates and authorizes
 * the caller, then spends the call's cost from its rate limit. Both steps in
 * one middleware layer because every layer costs every call an async
 * generator, copies of the call and several promises (each an async-hook
 * call under OpenTelemetry).
 */
export function admissionMiddleware(options: {
  readonly authenticate: Authenticator;
  readonly spendCallCost: CallCostSpender;
  /** Told of each call its caller's rate limit refused (metrics). */
  readonly onRateLimited?: (methodPath: string) => void;
}): ServerMiddleware<AuthenticatedContext> {
  return async function* admit(call, context) {
    const method = call.method.path;
    const principal = await options.authenticate(context, method);
    try {
      await options.spendCallCost(principal, method);
    } catch (error) {
      if (error instanceof ResourceExhaustedError) {
        options.onRateLimited?.(method);
      }
      throw error;
    }
    return yield* call.next(call.request, { ...context, principal, method });
  };
}
