import type { RateLimiter } from '@clinical/cache';
import type { Principal } from '../auth/principal.js';
import type { MethodPolicies } from '../server/defineService.js';

/** Spends a call's cost from its caller's rate-limit window, or throws. */
export type CallCostSpender = (principal: Principal, methodPath: string) => Promise<void>;

/** Spends each call's cost (its method's policy; 1 by default) from the caller's window. */
export function createCallCostSpender(options: {
  readonly limiter: RateLimiter;
  readonly policies: MethodPolicies;
}): CallCostSpender {
  return (principal, methodPath) => options.limiter.consume(principal.sub, options.policies.get(methodPath)?.cost ?? 1);
}
