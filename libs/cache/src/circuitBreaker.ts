export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit. */
  readonly failureThreshold?: number;
  /** How long the circuit stays open before one trial call is let through. */
  readonly resetAfterMs?: number;
  readonly now?: () => number;
}

/** Thrown instead of calling a dependency whose circuit is open. */
export class CircuitOpenError extends Error {
  constructor() {
    super('circuit open: dependency recently failing');
    this.name = 'CircuitOpenError';
  }
}

export interface CircuitBreaker {
  /**
   * Runs `operation` unless the circuit is open.
   * @throws CircuitOpenError when open; the operation's own error otherwise.
   */
  run<T>(operation: () => Promise<T>): Promise<T>;
  /** True while calls are being refused without trying. */
  isOpen(): boolean;
  /** Reports an outcome observed outside `run` (e.g. a client's error event). */
  recordFailure(): void;
  recordSuccess(): void;
}

/**
 * A consecutive-failure circuit breaker: after `failureThreshold` failures in
 * a row, calls fail at once for `resetAfterMs`; then a single trial call
 * decides whether to close again. Small on purpose: no timers, no allocation
 * per call beyond the operation's own.
 */
export function createCircuitBreaker(options: CircuitBreakerOptions = {}): CircuitBreaker {
  const failureThreshold = options.failureThreshold ?? 3;
  const resetAfterMs = options.resetAfterMs ?? 2_000;
  const now = options.now ?? Date.now;
  let consecutiveFailures = 0;
  let openedAt: number | undefined;
  let trialInFlight = false;

  function recordFailure(): void {
    consecutiveFailures += 1;
    if (consecutiveFailures >= failureThreshold) {
      openedAt = now();
    }
  }

  function recordSuccess(): void {
    consecutiveFailures = 0;
    openedAt = undefined;
  }

  function isOpen(): boolean {
    return openedAt !== undefined && (now() - openedAt < resetAfterMs || trialInFlight);
  }

  return {
    // Plain thens rather than an async function: it wraps every Redis command,
    // and under OpenTelemetry each promise an await adds costs async-hook calls.
    run(operation) {
      if (isOpen()) {
        return Promise.reject(new CircuitOpenError());
      }
      const isTrial = openedAt !== undefined;
      trialInFlight ||= isTrial;
      const settle = () => {
        if (isTrial) {
          trialInFlight = false;
        }
      };
      let pending: ReturnType<typeof operation>;
      try {
        pending = operation();
      } catch (error) {
        settle();
        recordFailure();
        return Promise.reject(error);
      }
      return pending.then(
        (result) => {
          settle();
          recordSuccess();
          return result;
        },
        (error: unknown) => {
          settle();
          recordFailure();
          throw error;
        },
      );
    },
    isOpen,
    recordFailure,
    recordSuccess,
  };
}
