import { analyticsV1 } from '@clinical/contracts';
import { runIdempotent } from '@clinical/db';
import { AbortedError, DomainError, UnavailableError } from '@clinical/errors';
import { FieldValidator, idempotencyKeyOf, type HandlerContext } from '@clinical/server-kit';
import { activeTraceId } from '@clinical/telemetry';
import { durationOfMs } from './durations.js';
import type { ViewRefresher } from './viewRefresher.js';

const responseCodec = {
  encode: (response: analyticsV1.RefreshAnalyticsResponse) => analyticsV1.RefreshAnalyticsResponse.encode(response).finish(),
  decode: (bytes: Uint8Array) => analyticsV1.RefreshAnalyticsResponse.decode(bytes),
};

/**
 * RefreshAnalytics (admin): refreshes the figures now, on this replica, and
 * answers when it has committed. ABORTED while any replica refreshes. A failed
 * refresh leaves the figures as they were and is UNAVAILABLE (retryable); the
 * schedule retries it with backoff. A request_id makes a retry return the
 * first result (stored in the refresh's own transaction).
 */
export function refreshAnalyticsHandler(refresher: ViewRefresher, replica: string) {
  return async function refreshAnalytics(
    request: analyticsV1.RefreshAnalyticsRequest,
    context: HandlerContext,
  ): Promise<analyticsV1.RefreshAnalyticsResponse> {
    const v = new FieldValidator();
    v.uuid('request_id', request.requestId, false);
    v.throwIfInvalid();
    const requestId = request.requestId ? request.requestId.toLowerCase() : undefined;
    const idempotencyKey = idempotencyKeyOf(context, request, analyticsV1.RefreshAnalyticsRequest, 'AnalyticsService/RefreshAnalytics');
    const attempt = {
      trigger: 'REQUESTED' as const,
      replica,
      requestedBy: context.principal.sub,
      requestId,
      traceId: activeTraceId(),
    };

    let run;
    try {
      run = await refresher.withLock(attempt, (refresh, transaction) =>
        runIdempotent(transaction, idempotencyKey, responseCodec, async () => {
          const refreshed = await refresh();
          return {
            asOfTime: refreshed.started_at,
            duration: durationOfMs(refreshed.duration_ms),
            rowCount: refreshed.row_count,
          };
        }),
      );
    } catch (error) {
      if (error instanceof DomainError) {
        throw error;
      }
      throw new UnavailableError('the refresh failed; the figures stay as of the last refresh; retry later', { cause: error });
    }
    if (!run.ran) {
      throw new AbortedError('a refresh of the analytics is already running; retry when it has finished');
    }
    return run.value;
  };
}
