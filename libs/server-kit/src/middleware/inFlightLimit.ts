import { isAbortError } from 'abort-controller-x';
import { ServerError, Status, type ServerMiddleware } from 'nice-grpc';
import { RichServerError } from 'nice-grpc-error-details';
import type { MethodPolicies } from '../server/defineService.js';
import type { CallMetrics } from '../telemetry/serviceMetrics.js';
import { retryDelay } from './edgeErrors.js';

const RETRY_AFTER_MS = 200;

export interface InFlightLimit {
  readonly middleware: ServerMiddleware;
  /** The calls in flight now (those with a policy) and their summed cost. */
  state(): { readonly calls: number; readonly cost: number };
}

/** The status a call ended with, from what its handler (past edgeErrors) threw. */
function statusOf(error: unknown): Status {
  if (error instanceof ServerError) {
    return error.code;
  }
  return isAbortError(error) ? Status.CANCELLED : Status.UNKNOWN;
}

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
 *
 * The middleware also times every call for `metrics` (when given): it is the
 * outermost layer of our own (inside errorDetails, around edgeErrors, so it
 * sees final statuses), and timing here costs two clock reads and one
 * histogram record per call, no layer (generator, promises) of its own.
 */
export function createInFlightLimit(options: {
  readonly budget: number;
  readonly policies: MethodPolicies;
  readonly onShed: () => void;
  readonly metrics?: CallMetrics;
}): InFlightLimit {
  const { budget, policies, metrics } = options;
  let inFlight = 0;
  let calls = 0;
  const middleware: ServerMiddleware = async function* limitInFlight(call, context) {
    const path = call.method.path;
    const startedAt = metrics ? performance.now() : 0;
    const cost = policies.get(path)?.cost;
    // The cost taken from the budget, once the call is admitted.
    let admitted: number | undefined;
    // Unset when the generator is closed from outside (a stream cancelled between messages).
    let status: Status | undefined;
    try {
      if (cost !== undefined) {
        if (inFlight + cost > budget) {
          options.onShed();
          metrics?.shed(path);
          throw new RichServerError(Status.UNAVAILABLE, 'the server is overloaded; retry later', [retryDelay(RETRY_AFTER_MS)]);
        }
        inFlight += cost;
        calls += 1;
        admitted = cost;
      }
      const result = yield* call.next(call.request, context);
      status = Status.OK;
      return result;
    } catch (error) {
      status = statusOf(error);
      throw error;
    } finally {
      if (admitted !== undefined) {
        inFlight -= admitted;
        calls -= 1;
      }
      metrics?.ended(path, status ?? Status.CANCELLED, (performance.now() - startedAt) / 1_000);
    }
  };
  return { middleware, state: () => ({ calls, cost: inFlight }) };
}
