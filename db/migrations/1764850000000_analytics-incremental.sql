-- Up Migration

-- The view below counts days enrolled to current_date, as analytics-svc's refreshes do: in UTC.
SET LOCAL TimeZone = 'UTC';

-- ---------------------------------------------------------------------------
-- Incremental analytics. A refresh used to recompute patient_analytics from
-- every reading (REFRESH ... CONCURRENTLY): its cost grew with vital_signs,
-- and on 10^6 readings it kept a core busy for seconds, while readers were
-- slowed and shed. Now a refresh folds in what changed since the previous one:
--
--   analytics_pending_changes   what changed, queued in the writers' own
--                               transactions from their audit events
--   analytics_patient_figures   per patient: where it counts (site, protocol,
--                               status, enrollment date) and its reading sums
--   analytics_site_figures      per site and protocol: the sums the served
--                               figures are computed from
--
-- The queue is the watermark. A change is queued in the transaction that
-- makes it, so it becomes visible exactly when its data does: a refresh (one
-- REPEATABLE READ snapshot) consumes the changes it can see and leaves those
-- committed after its snapshot, however early they began, to the next one.
--
-- Changes are taken from the audit trail as it is written, not from
-- vital_signs or patients: every write of either is audited in its own
-- transaction (one event per statement and patient for readings, one per
-- row for patients), whichever path wrote it (the tables' triggers, or a
-- writer that audits its own bulk readings), so one statement-level trigger
-- on audit_events sees them all and adds no work to the tables themselves.
-- ---------------------------------------------------------------------------

-- Changes waiting for the next refresh:
--   READINGS_ADDED    readings a transaction inserted for a patient, as its
--                     audit event describes them (count, measurement times);
--                     the refresh finds them by patient and time, and by the
--                     transaction that wrote them
--   READINGS_CHANGED  readings of the patient were updated or deleted: the
--                     refresh counts the patient's readings again
--   PATIENT           the patient was added, removed, or changed where it
--                     counts (site, protocol, status, enrollment date)
--   REBUILD           recompute everything: queued by TRUNCATE, or by an
--                     operator after writes that bypassed the audit triggers
--                     (session_replication_role = replica):
--                     INSERT INTO analytics_pending_changes (change) VALUES ('REBUILD')
-- No index: every refresh consumes all it sees, in one pass.
CREATE TABLE analytics_pending_changes (
  change                 varchar(20) NOT NULL,
  patient_id             uuid,
  -- READINGS_ADDED: the writing transaction (its readings' xmin), and what
  -- its event says, as text: parsed by the refresh, so that a malformed
  -- event can never fail the write that queued it.
  writer_xid             xid8,
  first_measurement_time text,
  last_measurement_time  text,
  reading_count          bigint,
  -- When it was queued (the writer's transaction start): the backlog's age.
  queued_at              timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT analytics_pending_changes_change_check
    CHECK (change IN ('READINGS_ADDED', 'READINGS_CHANGED', 'PATIENT', 'REBUILD')),
  CONSTRAINT analytics_pending_changes_patient_check CHECK ((change = 'REBUILD') = (patient_id IS NULL))
) WITH (
  -- Emptied by every refresh: vacuum it often so that its scan stays short.
  autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000
);

-- Each patient as the figures count it. The refresh needs where a patient
-- counted before a change to take it out of that site and protocol, and its
-- reading sums to move them when the patient moves. No foreign key: it would
-- add a check to every delete of a patient.
CREATE TABLE analytics_patient_figures (
  patient_id      uuid PRIMARY KEY,
  site_id         varchar(50) NOT NULL,
  protocol_id     varchar(50) NOT NULL,
  status          varchar(50) NOT NULL,
  enrollment_date date NOT NULL,
  vitals_count    bigint NOT NULL,
  systolic_sum    bigint NOT NULL,
  systolic_n      bigint NOT NULL,
  diastolic_sum   bigint NOT NULL,
  diastolic_n     bigint NOT NULL,
  heart_rate_sum  bigint NOT NULL,
  heart_rate_n    bigint NOT NULL,
  temperature_sum numeric NOT NULL,
  temperature_n   bigint NOT NULL
) WITH (
  -- Room on each page for the new version of a row the refresh updates
  -- (HOT: no index entry to add, nothing for vacuum to remove from the index).
  fillfactor = 70
);

-- Per site and protocol: exact sums (integers and numeric), from which
-- analytics-svc computes each served figure as patient_analytics did. A pair
-- exists while it has patients.
CREATE TABLE analytics_site_figures (
  site_id             varchar(50) NOT NULL,
  protocol_id         varchar(50) NOT NULL,
  patient_count       bigint NOT NULL,
  -- Sum of (enrollment_date - 1970-01-01) in days: the mean days enrolled at
  -- any date d is d - this / patient_count, so it never needs recomputing.
  enrollment_day_sum  bigint NOT NULL,
  screening_count     bigint NOT NULL,
  screen_failed_count bigint NOT NULL,
  enrolled_count      bigint NOT NULL,
  completed_count     bigint NOT NULL,
  withdrawn_count     bigint NOT NULL,
  vitals_count        bigint NOT NULL,
  systolic_sum        bigint NOT NULL,
  systolic_n          bigint NOT NULL,
  diastolic_sum       bigint NOT NULL,
  diastolic_n         bigint NOT NULL,
  heart_rate_sum      bigint NOT NULL,
  heart_rate_n        bigint NOT NULL,
  temperature_sum     numeric NOT NULL,
  temperature_n       bigint NOT NULL,
  PRIMARY KEY (site_id, protocol_id)
);

-- ---------------------------------------------------------------------------
-- The writers' side: one statement-level trigger on audit_events, reading the
-- transition table the audit chain's trigger already captures (so no per-row
-- work is added), queueing one row per event that changes a figure.
-- SECURITY DEFINER: writers need no grant on the queue. Nothing in an event
-- is cast in a way that can fail: a malformed event costs the refresh a
-- recount, never the writer its write.
-- ---------------------------------------------------------------------------
CREATE FUNCTION queue_analytics_changes() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
DECLARE
  uuid_text constant text := '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
BEGIN
  INSERT INTO analytics_pending_changes (change, patient_id, writer_xid, first_measurement_time, last_measurement_time, reading_count)
  WITH changes AS (
    SELECT entity_type, action, patient_id, payload
      FROM inserted
     WHERE event_type = 'DATA_CHANGE' AND entity_type IN ('vital_signs', 'patient') AND patient_id IS NOT NULL
  )
  SELECT 'READINGS_ADDED', patient_id, pg_current_xact_id(), payload ->> 'first_measurement_time',
         payload ->> 'last_measurement_time',
         CASE WHEN payload ->> 'count' ~ '^[0-9]{1,18}$' THEN (payload ->> 'count')::bigint END
    FROM changes
   WHERE entity_type = 'vital_signs' AND action = 'INSERT'
  UNION ALL
  SELECT 'READINGS_CHANGED', patient_id, NULL, NULL, NULL, NULL
    FROM changes
   WHERE entity_type = 'vital_signs' AND action <> 'INSERT'
  UNION ALL
  -- An update event is filed under the readings' old patient: one moved to
  -- another patient is named only among its new values.
  SELECT DISTINCT 'READINGS_CHANGED', (moved.reading ->> 'patient_id')::uuid, NULL::xid8, NULL, NULL, NULL::bigint
    FROM changes,
         jsonb_array_elements(CASE WHEN jsonb_typeof(payload -> 'new') = 'array' THEN payload -> 'new' END) AS moved(reading)
   WHERE entity_type = 'vital_signs' AND action = 'UPDATE' AND moved.reading ->> 'patient_id' ~ uuid_text
     AND (moved.reading ->> 'patient_id')::uuid <> patient_id
  UNION ALL
  -- A patient's update matters only if it changed a column the figures count by.
  SELECT 'PATIENT', patient_id, NULL, NULL, NULL, NULL
    FROM changes
   WHERE entity_type = 'patient'
     AND (action <> 'UPDATE' OR payload -> 'new' ?| ARRAY['patient_id', 'site_id', 'protocol_id', 'status', 'enrollment_date'])
  UNION ALL
  -- A patient whose id changed leaves its old id behind.
  SELECT 'PATIENT', (payload -> 'old' ->> 'patient_id')::uuid, NULL, NULL, NULL, NULL
    FROM changes
   WHERE entity_type = 'patient' AND action = 'UPDATE' AND payload -> 'old' ->> 'patient_id' ~ uuid_text
     AND (payload -> 'old' ->> 'patient_id')::uuid <> patient_id;
  RETURN NULL;
END
$$;

-- TRUNCATE is not audited row by row: it asks for a rebuild.
CREATE FUNCTION queue_analytics_rebuild() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
BEGIN
  INSERT INTO analytics_pending_changes (change) VALUES ('REBUILD');
  RETURN NULL;
END
$$;

-- Created before the tables are read below, the TRUNCATE triggers first:
-- CREATE TRIGGER waits for the writers of vital_signs and patients in flight
-- and holds new ones off until this migration commits, so no change falls
-- between the first filling and the queue. (In that order no writer holds
-- audit_events while it waits for one of the tables: a write is audited
-- after it is made, so none deadlocks with this migration.)
CREATE TRIGGER vital_signs_analytics_rebuild AFTER TRUNCATE ON vital_signs
  FOR EACH STATEMENT EXECUTE FUNCTION queue_analytics_rebuild();
CREATE TRIGGER patients_analytics_rebuild AFTER TRUNCATE ON patients
  FOR EACH STATEMENT EXECUTE FUNCTION queue_analytics_rebuild();
CREATE TRIGGER audit_events_analytics_queue AFTER INSERT ON audit_events
  REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION queue_analytics_changes();

-- The refresh parses the times an event gives: NULL, never an error, for
-- text that is not one (the refresh then recounts the patient instead).
CREATE FUNCTION analytics_timestamptz(value text) RETURNS timestamptz
  LANGUAGE plpgsql STABLE
  AS $$
BEGIN
  RETURN value::timestamptz;
EXCEPTION WHEN data_exception THEN
  RETURN NULL;
END
$$;

-- ---------------------------------------------------------------------------
-- The refresh's work. analytics-svc calls analytics_fold_changes() in its
-- REPEATABLE READ refresh transaction, as itself (SECURITY INVOKER: its own
-- grants), so everything it consumes and reads is of one snapshot. In a
-- function, its statements are planned once per connection: planning the
-- fold statement took longer than folding a small change. Every plan here
-- looks rows up by key (a LATERAL lookup per patient, kept from being
-- flattened into a join with OFFSET 0): nothing scans a table whose size is
-- not the change's, except a requested rebuild.
--
-- The fold, per patient named by a consumed change:
--   - readings a transaction added are found by patient and measurement
--     time (an index range) and told apart by xmin, the transaction that
--     wrote them; if they are not exactly what its audit events counted
--     (updated or deleted since, written in a savepoint, an event malformed)
--     the patient's readings are counted again in full, as they are after
--     any update or delete and for a patient seen for the first time;
--   - its counting columns are read again from patients;
--   - its old contribution leaves its old pair, its new one joins its new
--     pair (a patient deleted since only leaves). Sums are exact (bigint,
--     numeric), so figures folded any number of times equal the figures
--     computed at once. Pairs left without patients are removed.
-- ---------------------------------------------------------------------------
CREATE FUNCTION analytics_fold_changes(OUT folded_changes bigint, OUT folded_patients bigint,
                                       OUT recounted_patients bigint, OUT changed_pairs bigint, OUT rebuilt boolean)
  -- JIT off: compiling this statement's expressions took seconds, folding a small change milliseconds.
  LANGUAGE plpgsql SET search_path = public, pg_temp SET jit = off
  AS $$
#variable_conflict use_column
DECLARE
  emptied_sites text[];
  emptied_protocols text[];
BEGIN
  -- A rebuild when one is asked for, or when the change names more than a
  -- third of the patients: folding a patient costs about three times what
  -- recomputing it does (measured with 50 readings a patient), so past that
  -- a rebuild is the cheaper way to the same figures.
  SELECT coalesce(bool_or(change = 'REBUILD'), false)
         OR count(DISTINCT patient_id) > (SELECT coalesce(sum(patient_count), 0) / 3 FROM analytics_site_figures)
    INTO rebuilt
    FROM analytics_pending_changes;
  IF rebuilt THEN
    -- Everything from the tables, what every refresh cost before. The
    -- changes the snapshot sees are consumed with it: their data is in what
    -- it reads. DELETE rather than TRUNCATE: readers keep the old figures.
    WITH consumed AS (DELETE FROM analytics_pending_changes RETURNING 1)
    SELECT count(*) INTO folded_changes FROM consumed;
    DELETE FROM analytics_patient_figures;
    INSERT INTO analytics_patient_figures (patient_id, site_id, protocol_id, status, enrollment_date, vitals_count,
                                           systolic_sum, systolic_n, diastolic_sum, diastolic_n, heart_rate_sum,
                                           heart_rate_n, temperature_sum, temperature_n)
    SELECT p.patient_id, p.site_id, p.protocol_id, p.status, p.enrollment_date,
           coalesce(v.vitals_count, 0), coalesce(v.systolic_sum, 0), coalesce(v.systolic_n, 0),
           coalesce(v.diastolic_sum, 0), coalesce(v.diastolic_n, 0), coalesce(v.heart_rate_sum, 0),
           coalesce(v.heart_rate_n, 0), coalesce(v.temperature_sum, 0), coalesce(v.temperature_n, 0)
      FROM patients AS p
      LEFT JOIN (SELECT patient_id, count(*) AS vitals_count,
                        sum(systolic_bp) AS systolic_sum, count(systolic_bp) AS systolic_n,
                        sum(diastolic_bp) AS diastolic_sum, count(diastolic_bp) AS diastolic_n,
                        sum(heart_rate) AS heart_rate_sum, count(heart_rate) AS heart_rate_n,
                        sum(temperature) AS temperature_sum, count(temperature) AS temperature_n
                   FROM vital_signs GROUP BY patient_id) AS v USING (patient_id);
    GET DIAGNOSTICS folded_patients = ROW_COUNT;
    recounted_patients := folded_patients;
    DELETE FROM analytics_site_figures;
    INSERT INTO analytics_site_figures (site_id, protocol_id, patient_count, enrollment_day_sum, screening_count,
                                        screen_failed_count, enrolled_count, completed_count, withdrawn_count,
                                        vitals_count, systolic_sum, systolic_n, diastolic_sum, diastolic_n,
                                        heart_rate_sum, heart_rate_n, temperature_sum, temperature_n)
    SELECT site_id, protocol_id, count(*), sum(enrollment_date - date '1970-01-01'),
           count(*) FILTER (WHERE status = 'SCREENING'), count(*) FILTER (WHERE status = 'SCREEN_FAILED'),
           count(*) FILTER (WHERE status = 'ENROLLED'), count(*) FILTER (WHERE status = 'COMPLETED'),
           count(*) FILTER (WHERE status = 'WITHDRAWN'),
           sum(vitals_count), sum(systolic_sum), sum(systolic_n), sum(diastolic_sum), sum(diastolic_n),
           sum(heart_rate_sum), sum(heart_rate_n), sum(temperature_sum), sum(temperature_n)
      FROM analytics_patient_figures
     GROUP BY site_id, protocol_id;
    GET DIAGNOSTICS changed_pairs = ROW_COUNT;
    RETURN;
  END IF;

  WITH consumed AS (
    DELETE FROM analytics_pending_changes
    RETURNING change, patient_id, writer_xid, first_measurement_time, last_measurement_time, reading_count
  ), added AS (
    -- Readings added, per patient and writing transaction, as their events describe them.
    SELECT patient_id, writer_xid, min(first_at) AS first_at, max(last_at) AS last_at,
           sum(reading_count) AS reading_count,
           bool_and(first_at IS NOT NULL AND last_at IS NOT NULL AND reading_count IS NOT NULL) AS described
      FROM (SELECT patient_id, writer_xid, reading_count,
                   analytics_timestamptz(first_measurement_time) AS first_at,
                   analytics_timestamptz(last_measurement_time) AS last_at
              FROM consumed WHERE change = 'READINGS_ADDED') AS events
     GROUP BY patient_id, writer_xid
  ), located AS (
    SELECT a.patient_id, a.reading_count AS described_count, s.*
      FROM added AS a
      CROSS JOIN LATERAL (
        SELECT count(*) AS vitals_count,
               coalesce(sum(v.systolic_bp), 0) AS systolic_sum, count(v.systolic_bp) AS systolic_n,
               coalesce(sum(v.diastolic_bp), 0) AS diastolic_sum, count(v.diastolic_bp) AS diastolic_n,
               coalesce(sum(v.heart_rate), 0) AS heart_rate_sum, count(v.heart_rate) AS heart_rate_n,
               coalesce(sum(v.temperature), 0) AS temperature_sum, count(v.temperature) AS temperature_n
          FROM vital_signs AS v
         WHERE a.described AND v.patient_id = a.patient_id
           AND v.measurement_time BETWEEN a.first_at AND a.last_at AND v.xmin = xid(a.writer_xid)) AS s
  ), touched AS (
    SELECT DISTINCT patient_id FROM consumed
  ), old_figures AS (
    SELECT f.*
      FROM touched AS t
      CROSS JOIN LATERAL (SELECT * FROM analytics_patient_figures AS f WHERE f.patient_id = t.patient_id OFFSET 0) AS f
  ), recount AS (
    SELECT patient_id FROM consumed WHERE change = 'READINGS_CHANGED'
    UNION
    SELECT patient_id FROM located WHERE vitals_count IS DISTINCT FROM described_count
    UNION
    (SELECT patient_id FROM touched EXCEPT SELECT patient_id FROM old_figures)
  ), recounted AS (
    SELECT r.patient_id, s.*
      FROM recount AS r
      CROSS JOIN LATERAL (
        SELECT count(*) AS vitals_count,
               coalesce(sum(v.systolic_bp), 0) AS systolic_sum, count(v.systolic_bp) AS systolic_n,
               coalesce(sum(v.diastolic_bp), 0) AS diastolic_sum, count(v.diastolic_bp) AS diastolic_n,
               coalesce(sum(v.heart_rate), 0) AS heart_rate_sum, count(v.heart_rate) AS heart_rate_n,
               coalesce(sum(v.temperature), 0) AS temperature_sum, count(v.temperature) AS temperature_n
          FROM vital_signs AS v
         WHERE v.patient_id = r.patient_id) AS s
  ), added_sums AS (
    SELECT patient_id, sum(vitals_count) AS vitals_count, sum(systolic_sum) AS systolic_sum, sum(systolic_n) AS systolic_n,
           sum(diastolic_sum) AS diastolic_sum, sum(diastolic_n) AS diastolic_n, sum(heart_rate_sum) AS heart_rate_sum,
           sum(heart_rate_n) AS heart_rate_n, sum(temperature_sum) AS temperature_sum, sum(temperature_n) AS temperature_n
      FROM located
     WHERE NOT EXISTS (SELECT FROM recount WHERE recount.patient_id = located.patient_id)
     GROUP BY patient_id
  ), new_figures AS (
    -- Recounted, or what it had plus what it added.
    SELECT t.patient_id, p.site_id, p.protocol_id, p.status, p.enrollment_date,
           coalesce(r.vitals_count, coalesce(o.vitals_count, 0) + coalesce(d.vitals_count, 0)) AS vitals_count,
           coalesce(r.systolic_sum, coalesce(o.systolic_sum, 0) + coalesce(d.systolic_sum, 0)) AS systolic_sum,
           coalesce(r.systolic_n, coalesce(o.systolic_n, 0) + coalesce(d.systolic_n, 0)) AS systolic_n,
           coalesce(r.diastolic_sum, coalesce(o.diastolic_sum, 0) + coalesce(d.diastolic_sum, 0)) AS diastolic_sum,
           coalesce(r.diastolic_n, coalesce(o.diastolic_n, 0) + coalesce(d.diastolic_n, 0)) AS diastolic_n,
           coalesce(r.heart_rate_sum, coalesce(o.heart_rate_sum, 0) + coalesce(d.heart_rate_sum, 0)) AS heart_rate_sum,
           coalesce(r.heart_rate_n, coalesce(o.heart_rate_n, 0) + coalesce(d.heart_rate_n, 0)) AS heart_rate_n,
           coalesce(r.temperature_sum, coalesce(o.temperature_sum, 0) + coalesce(d.temperature_sum, 0)) AS temperature_sum,
           coalesce(r.temperature_n, coalesce(o.temperature_n, 0) + coalesce(d.temperature_n, 0)) AS temperature_n
      FROM touched AS t
      CROSS JOIN LATERAL (SELECT site_id, protocol_id, status, enrollment_date FROM patients
                           WHERE patients.patient_id = t.patient_id OFFSET 0) AS p
      LEFT JOIN old_figures AS o ON o.patient_id = t.patient_id
      LEFT JOIN added_sums AS d ON d.patient_id = t.patient_id
      LEFT JOIN recounted AS r ON r.patient_id = t.patient_id
  ), kept AS (
    INSERT INTO analytics_patient_figures AS f (patient_id, site_id, protocol_id, status, enrollment_date, vitals_count,
                                                systolic_sum, systolic_n, diastolic_sum, diastolic_n, heart_rate_sum,
                                                heart_rate_n, temperature_sum, temperature_n)
    SELECT * FROM new_figures
    ON CONFLICT (patient_id) DO UPDATE
      SET (site_id, protocol_id, status, enrollment_date, vitals_count, systolic_sum, systolic_n, diastolic_sum,
           diastolic_n, heart_rate_sum, heart_rate_n, temperature_sum, temperature_n)
        = (excluded.site_id, excluded.protocol_id, excluded.status, excluded.enrollment_date, excluded.vitals_count,
           excluded.systolic_sum, excluded.systolic_n, excluded.diastolic_sum, excluded.diastolic_n,
           excluded.heart_rate_sum, excluded.heart_rate_n, excluded.temperature_sum, excluded.temperature_n)
    RETURNING 1
  ), dropped AS (
    DELETE FROM analytics_patient_figures
     WHERE patient_id = ANY (ARRAY(SELECT patient_id FROM old_figures EXCEPT SELECT patient_id FROM new_figures))
    RETURNING 1
  ), contributions AS (
    SELECT -1 AS sign, site_id, protocol_id, status, enrollment_date, vitals_count, systolic_sum, systolic_n,
           diastolic_sum, diastolic_n, heart_rate_sum, heart_rate_n, temperature_sum, temperature_n
      FROM old_figures
    UNION ALL
    SELECT 1, site_id, protocol_id, status, enrollment_date, vitals_count, systolic_sum, systolic_n,
           diastolic_sum, diastolic_n, heart_rate_sum, heart_rate_n, temperature_sum, temperature_n
      FROM new_figures
  ), pair_deltas AS (
    SELECT site_id, protocol_id,
           sum(sign) AS patient_count,
           sum(sign * (enrollment_date - date '1970-01-01')) AS enrollment_day_sum,
           coalesce(sum(sign) FILTER (WHERE status = 'SCREENING'), 0) AS screening_count,
           coalesce(sum(sign) FILTER (WHERE status = 'SCREEN_FAILED'), 0) AS screen_failed_count,
           coalesce(sum(sign) FILTER (WHERE status = 'ENROLLED'), 0) AS enrolled_count,
           coalesce(sum(sign) FILTER (WHERE status = 'COMPLETED'), 0) AS completed_count,
           coalesce(sum(sign) FILTER (WHERE status = 'WITHDRAWN'), 0) AS withdrawn_count,
           sum(sign * vitals_count) AS vitals_count,
           sum(sign * systolic_sum) AS systolic_sum, sum(sign * systolic_n) AS systolic_n,
           sum(sign * diastolic_sum) AS diastolic_sum, sum(sign * diastolic_n) AS diastolic_n,
           sum(sign * heart_rate_sum) AS heart_rate_sum, sum(sign * heart_rate_n) AS heart_rate_n,
           sum(sign * temperature_sum) AS temperature_sum, sum(sign * temperature_n) AS temperature_n
      FROM contributions
     GROUP BY site_id, protocol_id
  ), changed AS (
    INSERT INTO analytics_site_figures AS s (site_id, protocol_id, patient_count, enrollment_day_sum, screening_count,
                                             screen_failed_count, enrolled_count, completed_count, withdrawn_count,
                                             vitals_count, systolic_sum, systolic_n, diastolic_sum, diastolic_n,
                                             heart_rate_sum, heart_rate_n, temperature_sum, temperature_n)
    SELECT * FROM pair_deltas
     WHERE (patient_count, enrollment_day_sum, screening_count, screen_failed_count, enrolled_count, completed_count,
            withdrawn_count, vitals_count, systolic_sum, systolic_n, diastolic_sum, diastolic_n, heart_rate_sum,
            heart_rate_n, temperature_sum, temperature_n)
           IS DISTINCT FROM (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    ON CONFLICT (site_id, protocol_id) DO UPDATE
      SET (patient_count, enrollment_day_sum, screening_count, screen_failed_count, enrolled_count, completed_count,
           withdrawn_count, vitals_count, systolic_sum, systolic_n, diastolic_sum, diastolic_n, heart_rate_sum,
           heart_rate_n, temperature_sum, temperature_n)
        = (s.patient_count + excluded.patient_count, s.enrollment_day_sum + excluded.enrollment_day_sum,
           s.screening_count + excluded.screening_count, s.screen_failed_count + excluded.screen_failed_count,
           s.enrolled_count + excluded.enrolled_count, s.completed_count + excluded.completed_count,
           s.withdrawn_count + excluded.withdrawn_count, s.vitals_count + excluded.vitals_count,
           s.systolic_sum + excluded.systolic_sum, s.systolic_n + excluded.systolic_n,
           s.diastolic_sum + excluded.diastolic_sum, s.diastolic_n + excluded.diastolic_n,
           s.heart_rate_sum + excluded.heart_rate_sum, s.heart_rate_n + excluded.heart_rate_n,
           s.temperature_sum + excluded.temperature_sum, s.temperature_n + excluded.temperature_n)
    RETURNING site_id, protocol_id, patient_count
  )
  SELECT (SELECT count(*) FROM consumed), (SELECT count(*) FROM touched), (SELECT count(*) FROM recount),
         (SELECT count(*) FROM changed),
         ARRAY(SELECT site_id FROM changed WHERE patient_count = 0 ORDER BY site_id, protocol_id),
         ARRAY(SELECT protocol_id FROM changed WHERE patient_count = 0 ORDER BY site_id, protocol_id)
    INTO folded_changes, folded_patients, recounted_patients, changed_pairs, emptied_sites, emptied_protocols;

  IF cardinality(emptied_sites) > 0 THEN
    DELETE FROM analytics_site_figures AS s
     USING unnest(emptied_sites, emptied_protocols) AS e(site_id, protocol_id)
     WHERE s.site_id = e.site_id AND s.protocol_id = e.protocol_id AND s.patient_count = 0;
  END IF;
END
$$;

-- The first filling, from the tables as they are, by the function's rebuild.
INSERT INTO analytics_pending_changes (change) VALUES ('REBUILD');
SELECT analytics_fold_changes();

-- ---------------------------------------------------------------------------
-- patient_analytics stays, for the old system's plain SQL (same name,
-- columns, types and unique index; its owner may still REFRESH it), now
-- computed from the site figures: refreshing it costs in proportion to the
-- site and protocol pairs, not to the readings. analytics-svc refreshes it
-- in each refresh that changed a figure, so it always holds the figures of
-- the latest refresh; the service itself serves from analytics_site_figures.
-- avg_days_enrolled counts to the date of the refresh (analytics-svc's
-- refreshes run in UTC).
-- ---------------------------------------------------------------------------
DROP MATERIALIZED VIEW patient_analytics;

CREATE MATERIALIZED VIEW patient_analytics AS
SELECT site_id,
       protocol_id,
       patient_count,
       round(((current_date - date '1970-01-01')::bigint * patient_count - enrollment_day_sum)::numeric / patient_count, 2)
                                                            AS avg_days_enrolled,
       vitals_count                                         AS total_vitals,
       screening_count,
       screen_failed_count,
       enrolled_count,
       completed_count,
       withdrawn_count,
       round(systolic_sum::numeric / nullif(systolic_n, 0), 2)       AS avg_systolic_bp,
       round(diastolic_sum::numeric / nullif(diastolic_n, 0), 2)     AS avg_diastolic_bp,
       round(heart_rate_sum::numeric / nullif(heart_rate_n, 0), 2)   AS avg_heart_rate,
       round(temperature_sum / nullif(temperature_n, 0), 2)          AS avg_temperature
  FROM analytics_site_figures;

-- Required by REFRESH MATERIALIZED VIEW CONCURRENTLY.
CREATE UNIQUE INDEX patient_analytics_site_protocol_idx ON patient_analytics (site_id, protocol_id);

-- What each refresh folded in, for operators (and the tests): how many
-- queued changes, patients and pairs it touched, how many patients it had to
-- count again in full, and whether it recomputed everything. NULL for the
-- refreshes before this migration and for failed ones.
ALTER TABLE analytics_refreshes
  ADD COLUMN folded_changes     bigint,
  ADD COLUMN folded_patients    bigint,
  ADD COLUMN recounted_patients bigint,
  ADD COLUMN changed_pairs      bigint,
  ADD COLUMN rebuilt            boolean;

-- The figures changed with this migration: record it as a refresh, so that
-- the as-of time served with them is theirs (and no cached figure of an
-- earlier refresh is confused with them).
INSERT INTO analytics_refreshes (status, trigger, started_at, finished_at, row_count, replica, folded_patients,
                                 recounted_patients, changed_pairs, rebuilt)
SELECT 'SUCCEEDED', 'MIGRATION', now(), clock_timestamp(), count(*), 'migration',
       (SELECT count(*) FROM analytics_patient_figures), (SELECT count(*) FROM analytics_patient_figures), count(*), true
  FROM analytics_site_figures;

-- ---------------------------------------------------------------------------
-- Grants. analytics-svc consumes the queue (SELECT, DELETE: it never writes
-- a change), keeps the figures, and owns the view (REFRESH runs as its owner,
-- which reads the site figures). On vital_signs it also needs the columns
-- that find the readings a change added: measurement_time (an index range
-- per patient) and xmin (which transaction wrote a reading); still no device
-- data, and no demographics or history of a patient.
-- ---------------------------------------------------------------------------
REVOKE ALL ON analytics_pending_changes, analytics_patient_figures, analytics_site_figures, patient_analytics FROM PUBLIC;
REVOKE ALL ON FUNCTION queue_analytics_changes(), queue_analytics_rebuild(), analytics_timestamptz(text),
                       analytics_fold_changes() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION analytics_timestamptz(text), analytics_fold_changes() TO clinical_analytics_svc;
GRANT SELECT (measurement_time, xmin) ON vital_signs TO clinical_analytics_svc;
GRANT SELECT, DELETE ON analytics_pending_changes TO clinical_analytics_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON analytics_patient_figures, analytics_site_figures TO clinical_analytics_svc;
ALTER MATERIALIZED VIEW patient_analytics OWNER TO clinical_analytics_svc;

-- Down Migration
