import type { analyticsV1 } from '@clinical/contracts';

/** google.protobuf.Duration as ts-proto generates it (seconds as a string). */
export type DurationMessage = NonNullable<analyticsV1.RefreshAnalyticsResponse['duration']>;

/** The Duration of a number of milliseconds (non-negative, microsecond precision as PostgreSQL keeps it). */
export function durationOfMs(milliseconds: number): DurationMessage {
  const micros = Math.max(0, Math.round(milliseconds * 1_000));
  return { seconds: String(Math.floor(micros / 1_000_000)), nanos: (micros % 1_000_000) * 1_000 };
}
