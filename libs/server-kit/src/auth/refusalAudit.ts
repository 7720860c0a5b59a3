import type { RateLimiter } from '@clinical/cache';
import type { AccessRecorder } from '@clinical/db';
import { ResourceExhaustedError } from '@clinical/errors';
import type { CallRefusal } from '../middleware/authentication.js';

/** Who a refusal is recorded against when no token's signature held. */
const UNKNOWN_CALLER = 'anonymous';

/** Sources whose refusals are past their limit, at most this many remembered (a flood of addresses is bounded too). */
const MAX_SUPPRESSED_SOURCES = 10_000;

/**
 * Records refused calls (failed authentication, denied authorization) in the
 * audit trail as ACCESS_DENIED events, through the access recorder (batched,
 * sealed into the hash chain like every event). Each source address may
 * record `limiter`'s points per window, shared by every replica through
 * Redis: a flood of bad tokens cannot fill the trail. The first refusal past
 * the limit is recorded with the reason "rate limited" (once per process and
 * window), the next ones only counted in `onSuppressed`. Recording never
 * delays or fails the refusal itself.
 */
export function createRefusalAudit(options: {
  readonly recorder: AccessRecorder;
  readonly limiter: RateLimiter;
  /** Told about refusals not recorded: past the limit, or the recorder's backlog is full. */
  readonly onSuppressed: (error?: unknown) => void;
}): (refusal: CallRefusal) => void {
  const suppressedUntil = new Map<string, number>();

  const record = (refusal: CallRefusal, reason: string) => {
    try {
      options.recorder.record([
        {
          actor: refusal.subject ?? UNKNOWN_CALLER,
          method: refusal.method,
          entityType: 'rpc',
          entityId: refusal.method,
          patientId: '',
          clientIp: refusal.clientIp,
          refusal: { action: refusal.action, reason },
        },
      ]);
    } catch (error) {
      options.onSuppressed(error);
    }
  };

  const pastTheLimit = (refusal: CallRefusal, source: string, retryAfterMs: number) => {
    const now = Date.now();
    if ((suppressedUntil.get(source) ?? 0) > now) {
      options.onSuppressed();
      return;
    }
    if (suppressedUntil.size >= MAX_SUPPRESSED_SOURCES) {
      for (const [known, until] of suppressedUntil) {
        if (until <= now) {
          suppressedUntil.delete(known);
        }
      }
    }
    if (suppressedUntil.size < MAX_SUPPRESSED_SOURCES) {
      suppressedUntil.set(source, now + retryAfterMs);
    }
    record(refusal, `rate limited: further refusals from this source are not recorded for ${Math.ceil(retryAfterMs / 1000)} s (${refusal.reason})`);
  };

  return (refusal) => {
    const source = refusal.clientIp ?? 'unknown';
    options.limiter.consume(source, 1).then(
      () => record(refusal, refusal.reason),
      (error: unknown) => {
        if (error instanceof ResourceExhaustedError) {
          pastTheLimit(refusal, source, error.retryAfterMs);
        } else {
          options.onSuppressed(error);
        }
      },
    );
  };
}
