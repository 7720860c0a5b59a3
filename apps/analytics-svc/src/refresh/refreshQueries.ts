import { sql, type CommonQueryMethods } from '@clinical/db';
import { z } from 'zod';
import { foldPendingChanges, refreshLegacyView, type FoldSummary } from './figuresQueries.js';

/**
 * The session advisory lock that lets one replica at a time refresh the figures
 * ("anal" "ytic" in ASCII). Its two-int4 form shows in pg_locks as
 * classid/objid with objsubid = 2.
 */
const REFRESH_LOCK = { classid: 0x616e616c, objid: 0x79746963 } as const;

/** What the refresh was started by. */
export type RefreshTrigger = 'SCHEDULED' | 'REQUESTED';

/** A successful refresh: the as-of time of the figures it produced. */
export const refreshGenerationRow = z.object({
  refresh_id: z.string(),
  started_at: z.date(),
});
export type RefreshGeneration = z.infer<typeof refreshGenerationRow>;

/** The latest successful refresh (the migrations record the figures' fillings, so there is one). */
export async function selectLatestRefresh(db: CommonQueryMethods): Promise<RefreshGeneration | null> {
  return db.maybeOne(sql.type(refreshGenerationRow)`
    SELECT refresh_id, started_at FROM analytics_refreshes
     WHERE status = 'SUCCEEDED' ORDER BY refresh_id DESC LIMIT 1
  `);
}

const refreshStateRow = z.object({
  refresh_id: z.string().nullable(),
  started_at: z.date().nullable(),
  finished_at: z.date().nullable(),
  duration_ms: z.number().nullable(),
  row_count: z.string().nullable(),
  failure_count: z.number(),
  last_failure_at: z.date().nullable(),
  running_since: z.date().nullable(),
  refresh_running: z.boolean(),
  database_now: z.date(),
});
export type RefreshStateRow = z.infer<typeof refreshStateRow>;

/**
 * Everything the schedule and GetAnalyticsFreshness need, in one snapshot:
 * the last success, the failures since, whether any replica holds the
 * refresh lock now (and since when), and the database's clock, which every
 * replica shares.
 */
export async function selectRefreshState(db: CommonQueryMethods): Promise<RefreshStateRow> {
  return db.one(sql.type(refreshStateRow)`
    WITH last_success AS (
      SELECT refresh_id, started_at, finished_at, row_count,
             (extract(epoch FROM duration) * 1000)::float8 AS duration_ms
        FROM analytics_refreshes
       WHERE status = 'SUCCEEDED' ORDER BY refresh_id DESC LIMIT 1
    ), failures AS (
      SELECT count(*)::int AS failure_count, max(finished_at) AS last_failure_at
        FROM analytics_refreshes
       WHERE status = 'FAILED' AND refresh_id > coalesce((SELECT refresh_id FROM last_success), 0)
    ), holder AS (
      SELECT coalesce(a.xact_start, a.query_start) AS since
        FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.granted
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND l.classid = ${REFRESH_LOCK.classid}::int8::oid AND l.objid = ${REFRESH_LOCK.objid}::int8::oid
         AND l.objsubid = 2
    )
    SELECT s.refresh_id, s.started_at, s.finished_at, s.duration_ms, s.row_count,
           f.failure_count, f.last_failure_at,
           (SELECT max(since) FROM holder) AS running_since,
           EXISTS (SELECT FROM holder) AS refresh_running,
           clock_timestamp() AS database_now
      FROM failures AS f LEFT JOIN last_success AS s ON true
  `);
}

const lockAttemptRow = z.object({ acquired: z.boolean(), attempted_at: z.date(), pid: z.number() });

/** On a pinned connection: tries the refresh lock for its session (never waits); says when it tried, by the database's clock. */
export async function tryLockRefresh(connection: CommonQueryMethods): Promise<z.infer<typeof lockAttemptRow>> {
  return connection.one(sql.type(lockAttemptRow)`
    SELECT pg_try_advisory_lock(${REFRESH_LOCK.classid}, ${REFRESH_LOCK.objid}) AS acquired,
           clock_timestamp() AS attempted_at, pg_backend_pid() AS pid
  `);
}

/** Releases the refresh lock held by the session of this (pinned) connection. */
export async function unlockRefresh(connection: CommonQueryMethods): Promise<void> {
  await connection.query(sql.type(z.object({ released: z.boolean() }))`
    SELECT pg_advisory_unlock(${REFRESH_LOCK.classid}, ${REFRESH_LOCK.objid}) AS released
  `);
}

/** Who ran a refresh attempt, for the log. */
export interface RefreshAttempt {
  readonly trigger: RefreshTrigger;
  readonly replica: string;
  readonly requestedBy?: string;
  readonly requestId?: string;
  readonly traceId?: string;
}

const loggedRow = z.object({
  refresh_id: z.string(),
  started_at: z.date(),
  finished_at: z.date(),
  duration_ms: z.number(),
  row_count: z.string(),
});

/** A refresh that committed: its log row, and what it folded in. */
export type RefreshedRow = z.infer<typeof loggedRow> & { readonly folded: FoldSummary };

/**
 * In the caller's (REPEATABLE READ) transaction: the refresh's own settings
 * (a statement timeout of its own, dates in UTC, no parallel workers so that
 * readers keep a core, memory for a rebuild's aggregate; the fold function
 * turns JIT off itself), then the queued
 * changes folded into the figures (or everything recomputed, when asked),
 * patient_analytics refreshed if a figure or the date changed, and the log
 * row, which commits with the figures. The as-of time is the transaction's
 * start: everything committed before it is in the figures.
 */
export async function refreshFiguresAndLog(
  transaction: CommonQueryMethods,
  statementTimeoutMs: number,
  attempt: RefreshAttempt,
): Promise<RefreshedRow> {
  await transaction.query(sql.type(z.object({}).passthrough())`
    SELECT set_config('statement_timeout', ${String(statementTimeoutMs)}, true),
           set_config('TimeZone', 'UTC', true),
           set_config('max_parallel_workers_per_gather', '0', true),
           set_config('work_mem', '64MB', true)
  `);
  const folded = await foldPendingChanges(transaction);
  if (folded.rebuilt || folded.pairs > 0 || folded.newDay) {
    await refreshLegacyView(transaction);
  }
  const logged = await transaction.one(sql.type(loggedRow)`
    INSERT INTO analytics_refreshes (status, trigger, started_at, finished_at, row_count, replica,
                                     requested_by, request_id, trace_id,
                                     folded_changes, folded_patients, recounted_patients, changed_pairs, rebuilt)
    SELECT 'SUCCEEDED', ${attempt.trigger}, now(), clock_timestamp(), count(*), ${attempt.replica},
           ${attempt.requestedBy ?? null}, ${attempt.requestId ?? null}, ${attempt.traceId ?? null},
           ${folded.changes}, ${folded.patients}, ${folded.recounted}, ${folded.pairs}, ${folded.rebuilt}
      FROM analytics_site_figures
    RETURNING refresh_id, started_at, finished_at, (extract(epoch FROM duration) * 1000)::float8 AS duration_ms, row_count
  `);
  return { ...logged, folded };
}

/** Logs a failed attempt (after its rollback); `error` names the failure's class, never values. */
export async function insertFailedRefresh(
  db: CommonQueryMethods,
  attempt: RefreshAttempt,
  startedAt: Date,
  error: string,
): Promise<void> {
  await db.query(sql.type(z.object({}))`
    INSERT INTO analytics_refreshes (status, trigger, started_at, finished_at, error, replica,
                                     requested_by, request_id, trace_id)
    VALUES ('FAILED', ${attempt.trigger}, ${startedAt.toISOString()}::timestamptz,
            greatest(clock_timestamp(), ${startedAt.toISOString()}::timestamptz), ${error}, ${attempt.replica},
            ${attempt.requestedBy ?? null}, ${attempt.requestId ?? null}, ${attempt.traceId ?? null})
  `);
}

/** Cancels the statement a backend of this role is running (a refresh, at shutdown). */
export async function cancelBackend(db: CommonQueryMethods, pid: number): Promise<void> {
  await db.query(sql.type(z.object({ cancelled: z.boolean() }))`SELECT pg_cancel_backend(${pid}) AS cancelled`);
}
