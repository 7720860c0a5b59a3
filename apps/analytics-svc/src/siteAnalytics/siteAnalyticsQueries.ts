import { sql, type CommonQueryMethods } from '@clinical/db';
import { z } from 'zod';
import { siteAnalyticsRow, type SiteAnalyticsRow } from './siteAnalyticsRecord.js';

/** Rows of the view together with the refresh that produced them, read in one snapshot. */
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

/** Which rows of the view to read: keyset order is (site_id, protocol_id). */
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
 * One statement, so one snapshot: the requested rows and the latest
 * successful refresh. A refresh writes its log row in the transaction of its
 * REFRESH, so the figures are exactly that refresh's. Rows travel as one JSON
 * array (counts as text, averages as float8) to keep a single round trip.
 * Null when no refresh is on record.
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
      SELECT refresh_id, started_at FROM analytics_refreshes
       WHERE status = 'SUCCEEDED' ORDER BY refresh_id DESC LIMIT 1
    ), page AS (
      SELECT site_id, protocol_id, patient_count::text, avg_days_enrolled::float8, total_vitals::text,
             screening_count::text, screen_failed_count::text, enrolled_count::text, completed_count::text,
             withdrawn_count::text, avg_systolic_bp::float8, avg_diastolic_bp::float8, avg_heart_rate::float8,
             avg_temperature::float8
        FROM patient_analytics
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
