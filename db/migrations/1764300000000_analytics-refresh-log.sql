-- Up Migration

-- ---------------------------------------------------------------------------
-- The refresh log of patient_analytics, written by analytics-svc.
--
-- A successful refresh inserts its row in the same transaction as its
-- REFRESH MATERIALIZED VIEW CONCURRENTLY, so whoever sees the new figures also
-- sees their as-of time (started_at: the start of that transaction; the view
-- holds everything committed before it). A failed attempt is logged after its
-- rollback. Every replica reads its schedule, its retry backoff and the
-- current as-of time from here, so replicas agree without talking to each
-- other. Append-only for the service: it may SELECT and INSERT, nothing else.
-- ---------------------------------------------------------------------------
CREATE TABLE analytics_refreshes (
  -- Refreshes are serialized (advisory lock), so id order is time order.
  refresh_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  status       varchar(20) NOT NULL,
  -- SCHEDULED (the replicas' timer), REQUESTED (RefreshAnalytics), MIGRATION (the row below).
  trigger      varchar(20) NOT NULL,
  started_at   timestamptz NOT NULL,
  finished_at  timestamptz NOT NULL,
  duration     interval GENERATED ALWAYS AS (finished_at - started_at) STORED,
  -- Rows of the view after a successful refresh.
  row_count    bigint,
  -- Why an attempt failed: error class and SQLSTATE, never values.
  error        text,
  -- Which service instance ran it (host/pid/instance).
  replica      varchar(200) NOT NULL,
  requested_by varchar(200),
  request_id   uuid,
  trace_id     varchar(64),
  CONSTRAINT analytics_refreshes_status_check CHECK (status IN ('SUCCEEDED', 'FAILED')),
  CONSTRAINT analytics_refreshes_trigger_check CHECK (trigger IN ('SCHEDULED', 'REQUESTED', 'MIGRATION')),
  CONSTRAINT analytics_refreshes_order_check CHECK (finished_at >= started_at),
  CONSTRAINT analytics_refreshes_outcome_check CHECK (
    (status = 'SUCCEEDED' AND row_count IS NOT NULL AND error IS NULL)
    OR (status = 'FAILED' AND row_count IS NULL AND error IS NOT NULL))
);

-- The latest success is read on every analytics request (its id is in the cache keys).
CREATE INDEX analytics_refreshes_succeeded_idx ON analytics_refreshes (refresh_id DESC)
  WHERE status = 'SUCCEEDED';

-- The view was filled when the initial schema created it (WITH DATA): that is
-- its first as-of time, so figures are never served without one.
DO $$
DECLARE
  created timestamptz := now();
BEGIN
  IF to_regclass('schema_migrations') IS NOT NULL THEN
    SELECT coalesce(max(run_on), now()) INTO created
      FROM schema_migrations WHERE name = '1764000000000_initial-schema';
  END IF;
  INSERT INTO analytics_refreshes (status, trigger, started_at, finished_at, row_count, replica)
  SELECT 'SUCCEEDED', 'MIGRATION', created, created, count(*), 'migration'
    FROM patient_analytics;
END
$$;

REVOKE ALL ON analytics_refreshes FROM PUBLIC;
GRANT SELECT, INSERT ON analytics_refreshes TO clinical_analytics_svc;
-- RefreshAnalytics takes a request_id: retries return the first result.
GRANT SELECT, INSERT, UPDATE ON idempotent_requests TO clinical_analytics_svc;

-- Down Migration
