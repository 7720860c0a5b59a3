import { BinaryWriter } from '@bufbuild/protobuf/wire';
import * as grpc from '@grpc/grpc-js';
import { isAbortError } from 'abort-controller-x';
import { ServerError, Status, type ServerMiddleware } from 'nice-grpc';
import { RetryInfo, RichServerError } from 'nice-grpc-error-details';
import type { MethodPolicies } from '../server/defineService.js';
import type { CallMetrics } from '../telemetry/serviceMetrics.js';
import { retryDelay } from './edgeErrors.js';

const RETRY_AFTER_MS = 200;
const OVERLOADED = 'the server is overloaded; retry later';

/**
 * The grpc-status-details-bin of a shed call, encoded once: google.rpc.Status
 * { code, message, details: [Any(RetryInfo)] }, as errorDetailsServerMiddleware
 * would encode the RichServerError the middleware throws.
 */
const SHED_STATUS_DETAILS = (() => {
  const retryInfo = RetryInfo.encode(retryDelay(RETRY_AFTER_MS)).finish();
  const any = new BinaryWriter().uint32(10).string('type.googleapis.com/google.rpc.RetryInfo').uint32(18).bytes(retryInfo).finish();
  return Buffer.from(new BinaryWriter().uint32(8).int32(Status.UNAVAILABLE).uint32(18).string(OVERLOADED).uint32(26).bytes(any).finish());
})();

export interface InFlightLimit {
  /**
   * Sheds a call as it arrives, before it is decoded, traced or handed to a
   * middleware: under overload, refusing must cost far less than serving,
   * or the refusals themselves take the CPU the admitted calls need.
   */
  readonly interceptor: grpc.ServerInterceptor;
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
          throw new RichServerError(Status.UNAVAILABLE, OVERLOADED, [retryDelay(RETRY_AFTER_MS)]);
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
  const interceptor: grpc.ServerInterceptor = (method, call) => {
    const cost = policies.get(method.path)?.cost;
    if (cost === undefined || inFlight + cost <= budget) {
      // grpc-js chains interceptors by reduce: handing the call on unchanged adds no layer to an admitted call.
      return call as grpc.ServerInterceptingCall;
    }
    options.onShed();
    metrics?.shed(method.path);
    metrics?.ended(method.path, Status.UNAVAILABLE, 0);
    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata() {
            const trailer = new grpc.Metadata();
            trailer.set('grpc-status-details-bin', SHED_STATUS_DETAILS);
            call.sendStatus({ code: grpc.status.UNAVAILABLE, details: OVERLOADED, metadata: trailer });
          },
        });
      },
    });
  };
  return { interceptor, middleware, state: () => ({ calls, cost: inFlight }) };
}
