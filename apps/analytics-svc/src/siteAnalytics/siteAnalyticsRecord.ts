import type { analyticsV1 } from '@clinical/contracts';
import { z } from 'zod';

/** Patient statuses in the order the contract lists their counts (by status name). */
const STATUS_COLUMNS = [
  ['COMPLETED', 'completed_count'],
  ['ENROLLED', 'enrolled_count'],
  ['SCREENING', 'screening_count'],
  ['SCREEN_FAILED', 'screen_failed_count'],
  ['WITHDRAWN', 'withdrawn_count'],
] as const;

/** A patient_analytics row as the service selects it (int8 as strings, numeric as numbers). */
export const siteAnalyticsRow = z.object({
  site_id: z.string(),
  protocol_id: z.string(),
  patient_count: z.string(),
  avg_days_enrolled: z.number(),
  total_vitals: z.string(),
  screening_count: z.string(),
  screen_failed_count: z.string(),
  enrolled_count: z.string(),
  completed_count: z.string(),
  withdrawn_count: z.string(),
  avg_systolic_bp: z.number().nullable(),
  avg_diastolic_bp: z.number().nullable(),
  avg_heart_rate: z.number().nullable(),
  avg_temperature: z.number().nullable(),
});
export type SiteAnalyticsRow = z.infer<typeof siteAnalyticsRow>;

const optional = (value: number | null): number | undefined => value ?? undefined;

/** The contract's SiteAnalytics of a row of figures: zero status counts left out, missing averages unset. */
export function toSiteAnalytics(row: SiteAnalyticsRow): analyticsV1.SiteAnalytics {
  return {
    siteId: row.site_id,
    protocolId: row.protocol_id,
    patientCount: row.patient_count,
    avgDaysEnrolled: row.avg_days_enrolled,
    totalVitals: row.total_vitals,
    patientCountsByStatus: STATUS_COLUMNS.filter(([, column]) => row[column] !== '0').map(([status, column]) => ({
      status,
      patientCount: row[column],
    })),
    avgSystolicBp: optional(row.avg_systolic_bp),
    avgDiastolicBp: optional(row.avg_diastolic_bp),
    avgHeartRate: optional(row.avg_heart_rate),
    avgTemperatureCelsius: optional(row.avg_temperature),
  };
}
