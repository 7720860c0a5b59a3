import { sql, type CommonQueryMethods } from '@clinical/db';
import { z } from 'zod';
import { siteAnalyticsRow, type SiteAnalyticsRow } from './siteAnalyticsRecord.js';

/** Figures of site and protocol pairs together with the refresh that produced them, read in one snapshot. */
export interface ViewRead {
  readonly refreshId: string;
  readonly asOf: Date;
  readonly rows: readonly SiteAnalyticsRow[];
}

const viewReadRow = z.object({
  refresh_id: z.string(),
  as_of: z.date(),
  rows: z.array(siteAnalyticsRow),
});

/** Which pairs to read: keyset order is (site_id, protocol_id). */
export interface ViewQuery {
  /** Only these sites; undefined means every site. */
  readonly sites?: readonly string[];
  readonly siteId?: string;
  readonly protocolId?: string;
  /** Rows strictly after this (site_id, protocol_id). */
  readonly after?: { readonly siteId: string; readonly protocolId: string };
  readonly limit: number;
}

/**
 * One statement, so one snapshot: the requested figures and the latest
 * successful refresh. A refresh writes its log row in the transaction that
 * changes the figures, so they are exactly that refresh's. The figures are
 * computed from the site sums as patient_analytics computes them (means
 * rounded to two places; days enrolled counted to the refresh's UTC date),
 * and travel as one JSON array (counts as text, means as float8) to keep a
 * single round trip. Null when no refresh is on record.
 */
export async function selectViewRows(db: CommonQueryMethods, query: ViewQuery): Promise<ViewRead | null> {
  const conditions = [
    ...(query.sites ? [sql.fragment`site_id = ANY(${sql.array([...query.sites], 'text')})`] : []),
    ...(query.siteId !== undefined ? [sql.fragment`site_id = ${query.siteId}`] : []),
    ...(query.protocolId !== undefined ? [sql.fragment`protocol_id = ${query.protocolId}`] : []),
    ...(query.after ? [sql.fragment`(site_id, protocol_id) > (${query.after.siteId}, ${query.after.protocolId})`] : []),
  ];
  const where = conditions.length > 0 ? sql.fragment`WHERE ${sql.join(conditions, sql.fragment` AND `)}` : sql.fragment``;
  const row = await db.maybeOne(sql.type(viewReadRow)`
    WITH latest AS (
      SELECT refresh_id, started_at, ((started_at AT TIME ZONE 'UTC')::date - date '1970-01-01')::bigint AS as_of_day
        FROM analytics_refreshes
       WHERE status = 'SUCCEEDED' ORDER BY refresh_id DESC LIMIT 1
    ), page AS (
      SELECT f.site_id, f.protocol_id, f.patient_count::text,
             round((latest.as_of_day * f.patient_count - f.enrollment_day_sum)::numeric / f.patient_count, 2)::float8 AS avg_days_enrolled,
             f.vitals_count::text AS total_vitals,
             f.screening_count::text, f.screen_failed_count::text, f.enrolled_count::text, f.completed_count::text,
             f.withdrawn_count::text,
             round(f.systolic_sum::numeric / nullif(f.systolic_n, 0), 2)::float8 AS avg_systolic_bp,
             round(f.diastolic_sum::numeric / nullif(f.diastolic_n, 0), 2)::float8 AS avg_diastolic_bp,
             round(f.heart_rate_sum::numeric / nullif(f.heart_rate_n, 0), 2)::float8 AS avg_heart_rate,
             round(f.temperature_sum / nullif(f.temperature_n, 0), 2)::float8 AS avg_temperature
        FROM analytics_site_figures AS f CROSS JOIN latest
        ${where}
       ORDER BY site_id, protocol_id
       LIMIT ${query.limit}
    )
    SELECT latest.refresh_id, latest.started_at AS as_of,
           coalesce((SELECT json_agg(page ORDER BY site_id, protocol_id) FROM page), '[]'::json) AS rows
      FROM latest
  `);
  return row ? { refreshId: row.refresh_id, asOf: row.as_of, rows: row.rows } : null;
}
