import type { RateLimiter } from '@clinical/cache';
import type { ServerMiddleware } from 'nice-grpc';
import type { MethodPolicies } from '../server/defineService.js';
import type { AuthenticatedContext } from './authentication.js';

/** Spends each call's cost (its method's policy; 1 by default) from the caller's window. */
export function rateLimitingMiddleware(options: {
  readonly limiter: RateLimiter;
  readonly policies: MethodPolicies;
}): ServerMiddleware<object, AuthenticatedContext> {
  return async function* rateLimit(call, context) {
    const cost = options.policies.get(call.method.path)?.cost ?? 1;
    await options.limiter.consume(context.principal.sub, cost);
    return yield* call.next(call.request, context);
  };
}
