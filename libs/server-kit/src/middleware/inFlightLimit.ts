import { Status, type ServerMiddleware } from 'nice-grpc';
import { RichServerError } from 'nice-grpc-error-details';
import type { MethodPolicies } from '../server/defineService.js';
import { retryDelay } from './edgeErrors.js';

const RETRY_AFTER_MS = 200;

/**
 * Sheds load: while the calls in flight in this process already cost
 * `budget` (each its method's rate-limit cost, so a bulk write weighs as much
 * as many point reads), a new call that would exceed it is refused at once
 * with UNAVAILABLE and a retry delay. Without it, calls that arrive faster
 * than they finish pile up in handlers (waiting for a database connection,
 * say) until the heap runs out and the process dies; the rate limit cannot
 * stop that, since it counts per caller and many callers share a process.
 * It bounds what handlers hold, not latency: under overload, calls still
 * wait in the event loop and the HTTP/2 layer before they reach it.
 *
 * Methods without a policy (health checks, reflection) are never refused:
 * an overloaded replica is alive, and grpcurl should still describe it.
 */
export function inFlightLimitMiddleware(options: {
  readonly budget: number;
  readonly policies: MethodPolicies;
  readonly onShed: () => void;
}): ServerMiddleware {
  let inFlight = 0;
  return async function* limitInFlight(call, context) {
    const cost = options.policies.get(call.method.path)?.cost;
    if (cost === undefined) {
      return yield* call.next(call.request, context);
    }
    if (inFlight + cost > options.budget) {
      options.onShed();
      throw new RichServerError(Status.UNAVAILABLE, 'the server is overloaded; retry later', [retryDelay(RETRY_AFTER_MS)]);
    }
    inFlight += cost;
    try {
      return yield* call.next(call.request, context);
    } finally {
      inFlight -= cost;
    }
  };
}
