import { Status, type ServerMiddleware } from 'nice-grpc';
import { RetryInfo, RichServerError } from 'nice-grpc-error-details';

/** Health checks answer however busy the process is: an overloaded replica is alive, not dead. */
const EXEMPT_PREFIX = '/grpc.health.v1.Health/';

/**
 * Sheds load: past `limit` calls in flight in this process, a new call is
 * refused at once with UNAVAILABLE and a retry delay. Without it, calls that
 * arrive faster than they finish (waiting for a database connection, say)
 * pile up in memory until the process dies; the rate limit alone cannot stop
 * that, since it counts per caller and many callers share a process.
 */
export function inFlightLimitMiddleware(limit: number, retryAfterMs = 200): ServerMiddleware {
  let inFlight = 0;
  const refusal = () =>
    new RichServerError(Status.UNAVAILABLE, 'the server is overloaded; retry later', [
      RetryInfo.fromPartial({ retryDelay: { seconds: 0, nanos: retryAfterMs * 1_000_000 } }),
    ]);
  return async function* limitInFlight(call, context) {
    if (call.method.path.startsWith(EXEMPT_PREFIX)) {
      return yield* call.next(call.request, context);
    }
    if (inFlight >= limit) {
      throw refusal();
    }
    inFlight += 1;
    try {
      return yield* call.next(call.request, context);
    } finally {
      inFlight -= 1;
    }
  };
}
