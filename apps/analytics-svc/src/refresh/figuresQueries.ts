import { sql, type CommonQueryMethods } from '@clinical/db';
import { z } from 'zod';

/** What a refresh folded in (counts only: they name no patient). */
export interface FoldSummary {
  /** Queued changes consumed. */
  readonly changes: number;
  /** Patients whose figures were recomputed. */
  readonly patients: number;
  /** Of those, patients whose readings were counted again in full (after updates or deletes, say). */
  readonly recounted: number;
  /** Site and protocol pairs whose figures changed. */
  readonly pairs: number;
  /** Whether everything was recomputed from the tables (a REBUILD was queued). */
  readonly rebuilt: boolean;
  /** The UTC date moved since the last refresh: patient_analytics' days enrolled must move with it. */
  readonly newDay: boolean;
}

const foldedRow = z.object({
  folded_changes: z.number(),
  folded_patients: z.number(),
  recounted_patients: z.number(),
  changed_pairs: z.number(),
  rebuilt: z.boolean(),
  new_day: z.boolean(),
});

/**
 * In the refresh's REPEATABLE READ transaction: consumes every queued change
 * the snapshot sees and folds it into the figures, or recomputes everything
 * when a REBUILD is queued (analytics_fold_changes, in
 * db/migrations/1764850000000_analytics-incremental.sql, which says how). A
 * change committed after the snapshot stays queued, its data unseen, until
 * the next refresh. The cost follows the readings and patients changed, not
 * the tables.
 */
export async function foldPendingChanges(transaction: CommonQueryMethods): Promise<FoldSummary> {
  const folded = await transaction.one(sql.type(foldedRow)`
    SELECT f.folded_changes::int, f.folded_patients::int, f.recounted_patients::int, f.changed_pairs::int, f.rebuilt,
           coalesce((SELECT (started_at AT TIME ZONE 'UTC')::date FROM analytics_refreshes
                      WHERE status = 'SUCCEEDED' ORDER BY refresh_id DESC LIMIT 1)
                    <> (now() AT TIME ZONE 'UTC')::date, true) AS new_day
      FROM analytics_fold_changes() AS f
  `);
  return {
    changes: folded.folded_changes,
    patients: folded.folded_patients,
    recounted: folded.recounted_patients,
    pairs: folded.changed_pairs,
    rebuilt: folded.rebuilt,
    newDay: folded.new_day,
  };
}

/**
 * Refreshes patient_analytics (the old system's view, now computed from the
 * site figures) so that plain SQL reads the latest refresh's figures. It
 * costs in proportion to the pairs, so the refresh runs it only when a
 * figure changed or the date did. CONCURRENTLY: its plain-SQL readers never
 * wait.
 */
export async function refreshLegacyView(transaction: CommonQueryMethods): Promise<void> {
  await transaction.query(sql.type(z.object({}))`REFRESH MATERIALIZED VIEW CONCURRENTLY patient_analytics`);
}
