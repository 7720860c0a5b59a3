/**
 * Calls retried as the services ask: a rate-limited call (RESOURCE_EXHAUSTED
 * with a google.rpc.RetryInfo) waits the delay the service names, a shed one
 * (UNAVAILABLE with RetryInfo) too; a stream whose twin is still running
 * (ABORTED) waits a moment. Anything else fails the run.
 */
import { ClientError, Status } from 'nice-grpc';
import { RetryInfo, RichClientError } from 'nice-grpc-error-details';

export interface RetryStats {
  /** Time spent waiting because a caller's rate limit was spent. */
  rateLimitedMs: number;
  /** Calls tried again, for any reason. */
  retries: number;
}

export interface RetryOptions {
  readonly stats: RetryStats;
  /** ABORTED means a twin of this call (same request_id) is still running: retry it. */
  readonly retryAborted?: boolean;
  /** Told before each wait: why and how long. */
  readonly onRetry?: (reason: string, delayMs: number) => void;
  readonly signal?: AbortSignal;
}

/** Tries of a call refused with no RetryInfo (a connection that failed), before giving up. */
const PLAIN_UNAVAILABLE_ATTEMPTS = 3;
/** Tries of a call in all, whatever the reasons. */
const MAX_ATTEMPTS = 200;

/** The delay a RetryInfo in the error's details asks for, if it carries one. */
export function retryDelayOf(error: unknown): number | undefined {
  if (!(error instanceof RichClientError)) {
    return undefined;
  }
  for (const detail of error.extra) {
    if (detail.$type === RetryInfo.$type && detail.retryDelay) {
      return Number(detail.retryDelay.seconds) * 1_000 + Math.ceil(detail.retryDelay.nanos / 1_000_000);
    }
  }
  return undefined;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener('abort', aborted);
      resolve();
    }
    function aborted() {
      clearTimeout(timer);
      reject(signal?.reason);
    }
    signal?.addEventListener('abort', aborted, { once: true });
  });
}

export async function withRetries<T>(call: () => Promise<T>, options: RetryOptions): Promise<T> {
  let plainUnavailable = 0;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof ClientError) || attempt >= MAX_ATTEMPTS) {
        throw error;
      }
      const asked = retryDelayOf(error);
      let delayMs: number;
      let reason: string;
      if (error.code === Status.RESOURCE_EXHAUSTED && asked !== undefined) {
        // A little past the window's end, so that the retry lands in the next one.
        delayMs = asked + 50;
        reason = 'rate limit';
        options.stats.rateLimitedMs += delayMs;
      } else if (error.code === Status.UNAVAILABLE && asked !== undefined) {
        delayMs = asked;
        reason = 'service busy';
      } else if (error.code === Status.UNAVAILABLE && (plainUnavailable += 1) < PLAIN_UNAVAILABLE_ATTEMPTS) {
        delayMs = 500 * plainUnavailable;
        reason = 'service unavailable';
      } else if (error.code === Status.ABORTED && options.retryAborted) {
        delayMs = 1_000;
        reason = 'the same stream is still running';
      } else {
        throw error;
      }
      options.stats.retries += 1;
      options.onRetry?.(reason, delayMs);
      await sleep(delayMs, options.signal);
    }
  }
}
