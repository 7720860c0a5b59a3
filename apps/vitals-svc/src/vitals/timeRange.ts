import type { FieldValidator } from '@clinical/server-kit';
import type { TimeRange } from './vitalsQueries.js';

/** Checks a request's [start_time, end_time): each a valid instant when set, end after start when both are. */
export function validateTimeRange(v: FieldValidator, startTime: Date | undefined, endTime: Date | undefined): TimeRange {
  const start = v.instant('start_time', startTime);
  const end = v.instant('end_time', endTime);
  if (start && end && end.getTime() <= start.getTime()) {
    v.add('end_time', 'must be after start_time');
  }
  return { start, end };
}

/** The filters a page token is bound to, as one string. */
export function rangeFingerprint(patientId: string, range: TimeRange): string {
  return `${patientId}|${range.start?.getTime() ?? ''}|${range.end?.getTime() ?? ''}`;
}
