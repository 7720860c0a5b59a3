-- Up Migration

-- ---------------------------------------------------------------------------
-- Tamper evidence for audit_events: a hash chain sealed at COMMIT.
--
-- Every event gets a chain entry in the transaction that wrote it, at commit
-- time, so that chain order is commit order: a deferred constraint trigger
-- locks the single-row chain head (READ COMMITTED re-reads the latest head
-- after the wait), links the transaction's events after it and moves it. The
-- lock is held only from the seal to the end of the commit. A transaction
-- that commits late is chained after those that committed before it; one
-- that rolls back leaves no entry and no gap.
--
--   content_hash = sha256(canonical text of the stored event)
--   row_hash     = sha256(previous_hash || content_hash)
--
-- previous_hash is the row_hash of the entry before, or the anchor (64 zero
-- hex digits, then the last purged entry's row_hash after a retention purge).
-- Only rows written by the audit triggers or by the application roles are
-- chained: an event written any other way (a superuser's INSERT, an INSERT
-- with triggers disabled) has no entry and VerifyAuditTrail reports it.
-- ---------------------------------------------------------------------------

-- The owner of the retention purge: NOLOGIN and without members, so that only
-- its SECURITY DEFINER functions ever act as it. Roles are cluster-wide:
-- tolerate a concurrent creator.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'clinical_audit_purger') THEN
    BEGIN
      CREATE ROLE clinical_audit_purger NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL;
    END;
  END IF;
END
$$;

-- The canonical content of an event: every column, NULLs told apart from empty
-- strings, the timestamp as epoch microseconds (independent of TimeZone and
-- DateStyle), jsonb in its normalized text form. An inlinable SQL function: a
-- full verification computes it for every event.
CREATE FUNCTION audit_event_content_hash(
  event_id uuid, event_seq bigint, event_type text, entity_type text, entity_id uuid, entity_key text,
  patient_id uuid, user_id text, action text, payload jsonb, ip_address inet, occurred_at timestamptz,
  request_id text, trace_id text, reason text, db_role name) RETURNS bytea
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
  SELECT sha256(textsend(concat_ws(E'\x1f', event_id, event_seq, event_type, entity_type,
    coalesce(entity_id::text, E'\x1e'), coalesce(entity_key, E'\x1e'), coalesce(patient_id::text, E'\x1e'),
    user_id, action, payload::text, coalesce(ip_address::text, E'\x1e'),
    (extract(epoch FROM occurred_at) * 1000000)::bigint,
    coalesce(request_id, E'\x1e'), coalesce(trace_id, E'\x1e'), coalesce(reason, E'\x1e'), db_role)))
$$;

CREATE TABLE audit_chain (
  -- Position in the chain, from 1, gap-free, in commit order.
  sequence_number bigint PRIMARY KEY,
  -- The chained event (audit_events.event_seq).
  event_seq       bigint NOT NULL UNIQUE,
  previous_hash   bytea NOT NULL,
  content_hash    bytea NOT NULL,
  row_hash        bytea NOT NULL,
  CONSTRAINT audit_chain_hash_lengths
    CHECK (octet_length(previous_hash) = 32 AND octet_length(content_hash) = 32 AND octet_length(row_hash) = 32)
);

-- The last position and hash sealed: the next transaction links after it, and
-- a verification that finds the chain ending earlier reports a truncated tail.
CREATE TABLE audit_chain_head (
  singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  sequence_number bigint NOT NULL,
  row_hash        bytea NOT NULL
) WITH (fillfactor = 10);

INSERT INTO audit_chain_head (sequence_number, row_hash) VALUES (0, decode(repeat('00', 32), 'hex'));

-- Where the chain starts after each retention purge: the last removed entry.
CREATE TABLE audit_chain_anchors (
  anchor_sequence_number bigint PRIMARY KEY,
  anchor_hash            bytea NOT NULL CHECK (octet_length(anchor_hash) = 32),
  purged_event_count     bigint NOT NULL,
  cutoff_time            timestamptz NOT NULL,
  created_at             timestamptz NOT NULL DEFAULT now()
);

-- The shortest retention the database accepts, whatever audit-svc is
-- configured with: a purge may never remove events younger than this. Change
-- it as the schema owner when a trial's regulations allow less.
CREATE TABLE audit_retention_policy (
  singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  minimum_retention interval NOT NULL CHECK (minimum_retention >= interval '0')
);

INSERT INTO audit_retention_policy (minimum_retention) VALUES (interval '6 years');

-- Collects the event_seq values each INSERT statement wrote (as ranges) into a
-- transaction-local setting, for the seal. Not SECURITY DEFINER: current_user
-- is the role that wrote the events.
CREATE FUNCTION audit_chain_collect() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  ranges text;
BEGIN
  IF pg_trigger_depth() < 2 AND current_user NOT IN (
       'clinical_patient_svc', 'clinical_vitals_svc', 'clinical_audit_svc', 'clinical_analytics_svc',
       'clinical_audit_purger') THEN
    -- Written neither by an audit trigger nor by a service: left unchained.
    RETURN NULL;
  END IF;
  SELECT string_agg(low::text || '-' || high::text, ',') INTO ranges
    FROM (SELECT min(event_seq) AS low, max(event_seq) AS high
            FROM (SELECT event_seq, event_seq - row_number() OVER (ORDER BY event_seq) AS island FROM inserted) AS s
           GROUP BY island) AS r;
  PERFORM set_config('audit_chain.pending',
                     concat_ws(',', nullif(current_setting('audit_chain.pending', true), ''), ranges), true);
  RETURN NULL;
END
$$;

-- True for the first audit event of a transaction (or since the last seal):
-- the seal trigger is queued once per transaction, not once per event.
CREATE FUNCTION audit_chain_seal_needed() RETURNS boolean
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF current_setting('audit_chain.seal_queued', true) = 'on' THEN
    RETURN false;
  END IF;
  PERFORM set_config('audit_chain.seal_queued', 'on', true);
  RETURN true;
END
$$;

-- Links the hashes of `content_hashes` after `previous`, in order.
CREATE FUNCTION audit_chain_link(previous bytea, content_hashes bytea[]) RETURNS bytea[]
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
  AS $$
DECLARE
  linked bytea[] := array_fill(NULL::bytea, ARRAY[coalesce(array_length(content_hashes, 1), 0)]);
BEGIN
  FOR i IN 1 .. coalesce(array_length(content_hashes, 1), 0) LOOP
    previous := sha256(previous || content_hashes[i]);
    linked[i] := previous;
  END LOOP;
  RETURN linked;
END
$$;

-- Seals the transaction's pending events at commit: hashes their content
-- (before taking the lock), locks the head, links them after it.
CREATE FUNCTION audit_chain_seal() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
DECLARE
  pending text := current_setting('audit_chain.pending', true);
  seqs bigint[] := '{}';
  digests bytea[] := '{}';
  hashes bytea[];
  range_low bigint;
  range_high bigint;
  head_sequence bigint;
  head_hash bytea;
  n integer;
BEGIN
  PERFORM set_config('audit_chain.seal_queued', '', true);
  IF pending IS NULL OR pending = '' THEN
    RETURN NULL;
  END IF;
  PERFORM set_config('audit_chain.pending', '', true);
  FOR range_low, range_high IN
    SELECT split_part(r, '-', 1)::bigint, split_part(r, '-', 2)::bigint
      FROM unnest(string_to_array(pending, ',')) AS r
  LOOP
    SELECT seqs || array_agg(s.event_seq), digests || array_agg(s.content_hash)
      INTO seqs, digests
      FROM (SELECT e.event_seq,
                   audit_event_content_hash(e.event_id, e.event_seq, e.event_type, e.entity_type, e.entity_id,
                     e.entity_key, e.patient_id, e.user_id, e.action, e.payload, e.ip_address, e."timestamp",
                     e.request_id, e.trace_id, e.reason, e.db_role) AS content_hash
              FROM audit_events AS e
             WHERE e.event_seq BETWEEN range_low AND range_high
             ORDER BY e.event_seq) AS s;
  END LOOP;
  n := coalesce(array_length(seqs, 1), 0);
  IF n = 0 THEN
    RETURN NULL;
  END IF;
  SELECT sequence_number, row_hash INTO head_sequence, head_hash FROM audit_chain_head WHERE singleton FOR UPDATE;
  hashes := audit_chain_link(head_hash, digests);
  INSERT INTO audit_chain (sequence_number, event_seq, previous_hash, content_hash, row_hash)
  SELECT head_sequence + u.position, u.event_seq,
         CASE WHEN u.position = 1 THEN head_hash ELSE hashes[u.position - 1] END,
         u.content_hash, u.row_hash
    FROM unnest(seqs, digests, hashes) WITH ORDINALITY AS u(event_seq, content_hash, row_hash, position);
  UPDATE audit_chain_head SET sequence_number = head_sequence + n, row_hash = hashes[n] WHERE singleton;
  RETURN NULL;
END
$$;

CREATE TRIGGER audit_events_chain_collect AFTER INSERT ON audit_events
  REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_collect();
CREATE CONSTRAINT TRIGGER audit_events_chain_seal AFTER INSERT ON audit_events
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (audit_chain_seal_needed()) EXECUTE FUNCTION audit_chain_seal();

-- Events written before this migration are chained now, in event_seq order.
DO $$
DECLARE
  batch_low bigint := 0;
  seqs bigint[];
  digests bytea[];
  hashes bytea[];
  head_sequence bigint;
  head_hash bytea;
BEGIN
  LOOP
    SELECT array_agg(s.event_seq), array_agg(s.content_hash) INTO seqs, digests
      FROM (SELECT e.event_seq,
                   audit_event_content_hash(e.event_id, e.event_seq, e.event_type, e.entity_type, e.entity_id,
                     e.entity_key, e.patient_id, e.user_id, e.action, e.payload, e.ip_address, e."timestamp",
                     e.request_id, e.trace_id, e.reason, e.db_role) AS content_hash
              FROM audit_events AS e
             WHERE e.event_seq > batch_low
             ORDER BY e.event_seq
             LIMIT 50000) AS s;
    EXIT WHEN seqs IS NULL;
    SELECT sequence_number, row_hash INTO head_sequence, head_hash FROM audit_chain_head WHERE singleton;
    hashes := audit_chain_link(head_hash, digests);
    INSERT INTO audit_chain (sequence_number, event_seq, previous_hash, content_hash, row_hash)
    SELECT head_sequence + u.position, u.event_seq,
           CASE WHEN u.position = 1 THEN head_hash ELSE hashes[u.position - 1] END, u.content_hash, u.row_hash
      FROM unnest(seqs, digests, hashes) WITH ORDINALITY AS u(event_seq, content_hash, row_hash, position);
    UPDATE audit_chain_head
       SET sequence_number = head_sequence + array_length(seqs, 1), row_hash = hashes[array_length(seqs, 1)]
     WHERE singleton;
    batch_low := seqs[array_length(seqs, 1)];
  END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- Append-only, with one exception: the retention purge. UPDATE and TRUNCATE
-- are refused to everyone; DELETE only to clinical_audit_purger, which no one
-- logs in as and no one is a member of: only its SECURITY DEFINER purge
-- function acts as it. (A GUC flag would not do: any role can set one.)
-- ---------------------------------------------------------------------------
CREATE FUNCTION refuse_audit_change() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW' AND current_user = 'clinical_audit_purger' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER audit_events_append_only ON audit_events;
DROP TRIGGER audit_events_no_truncate ON audit_events;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();
CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain
  FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();
CREATE TRIGGER audit_chain_anchors_append_only BEFORE UPDATE OR DELETE ON audit_chain_anchors
  FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_chain_anchors_no_truncate BEFORE TRUNCATE ON audit_chain_anchors
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- ---------------------------------------------------------------------------
-- Retention purge. Removes whole calendar months (UTC) of events that are all
-- past the cutoff and that together form a prefix of the chain, so that the
-- rest starts at a new anchor (the last removed entry's row_hash) and still
-- verifies. audit-svc verifies the prefix first; this function enforces what
-- no caller may bypass: the retention floor, whole months, a chain prefix.
-- ---------------------------------------------------------------------------

-- The months that a purge at `cutoff` would remove, oldest first; empty when
-- none can be. Every row repeats the last position removed.
CREATE FUNCTION audit_purge_plan(cutoff timestamptz)
  RETURNS TABLE (month_start timestamptz, event_count bigint, first_sequence_number bigint,
                 last_sequence_number bigint, purge_through bigint)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
  WITH anchor AS (
    SELECT coalesce(max(anchor_sequence_number), 0) AS position FROM audit_chain_anchors
  ), months AS (
    SELECT date_trunc('month', e."timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start,
           count(*) AS events, count(c.sequence_number) AS chained,
           min(c.sequence_number) AS first_position, max(c.sequence_number) AS last_position
      FROM audit_events AS e LEFT JOIN audit_chain AS c ON c.event_seq = e.event_seq
     WHERE e."timestamp" < date_trunc('month', cutoff AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
     GROUP BY 1
  ), running AS (
    SELECT m.*,
           sum(m.events) OVER w AS cumulative,
           bool_and(m.chained = m.events) OVER w AS all_chained,
           max(m.last_position) OVER w AS highest
      FROM months AS m
    WINDOW w AS (ORDER BY m.start)
  ), chosen AS (
    -- The last month such that the positions after the anchor up to the
    -- highest one hold exactly the events of it and the months before, all
    -- chained: a whole-month prefix of the chain.
    SELECT r.start, r.highest
      FROM running AS r, anchor AS a
     WHERE r.all_chained AND r.highest - a.position = r.cumulative
     ORDER BY r.start DESC
     LIMIT 1
  )
  SELECT r.start, r.events, r.first_position, r.last_position, chosen.highest
    FROM running AS r, chosen
   WHERE r.start <= chosen.start
   ORDER BY r.start
$$;

-- Removes the chain prefix up to `purge_through` (as planned by
-- audit_purge_plan for `cutoff`), records the new anchor and an
-- ADMINISTRATIVE PURGE event, and returns that event's id. Refuses a cutoff
-- inside the retention floor, a prefix that is not the plan's, and a prefix
-- whose last hash is not `expected_anchor_hash` (the one audit-svc verified).
CREATE FUNCTION audit_purge_prefix(cutoff timestamptz, purge_through bigint, expected_anchor_hash bytea,
                                   audit_payload jsonb)
  RETURNS uuid
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
DECLARE
  floor_interval interval := (SELECT minimum_retention FROM audit_retention_policy WHERE singleton);
  planned bigint;
  purged bigint;
  anchor bytea;
  purge_event uuid;
BEGIN
  IF cutoff > now() - floor_interval THEN
    RAISE EXCEPTION 'cutoff is within the minimum retention of %', floor_interval USING ERRCODE = 'check_violation';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('audit_purge'));
  SELECT max(p.purge_through) INTO planned FROM audit_purge_plan(cutoff) AS p;
  IF planned IS NULL OR planned <> purge_through THEN
    RAISE EXCEPTION 'the purge plan changed' USING ERRCODE = 'serialization_failure';
  END IF;
  SELECT row_hash INTO anchor FROM audit_chain WHERE sequence_number = purge_through;
  IF anchor IS DISTINCT FROM expected_anchor_hash THEN
    RAISE EXCEPTION 'the chain changed since it was verified' USING ERRCODE = 'serialization_failure';
  END IF;
  DELETE FROM audit_events AS e
   USING audit_chain AS c
   WHERE c.event_seq = e.event_seq
     AND c.sequence_number > coalesce((SELECT max(anchor_sequence_number) FROM audit_chain_anchors), 0)
     AND c.sequence_number <= purge_through;
  GET DIAGNOSTICS purged = ROW_COUNT;
  DELETE FROM audit_chain WHERE sequence_number <= purge_through;
  INSERT INTO audit_chain_anchors (anchor_sequence_number, anchor_hash, purged_event_count, cutoff_time)
  VALUES (purge_through, anchor, purged, cutoff);
  INSERT INTO audit_events (event_type, entity_type, user_id, action, payload, ip_address, request_id, trace_id, reason)
  VALUES ('ADMINISTRATIVE', 'audit_events', audit_actor(), 'PURGE',
          audit_payload || jsonb_build_object('purged_event_count', purged,
                                              'anchor_sequence_number', purge_through,
                                              'anchor_hash', encode(anchor, 'hex')),
          audit_context('client_ip')::inet, audit_context('request_id'), audit_context('trace_id'),
          audit_context('reason'))
  RETURNING event_id INTO purge_event;
  RETURN purge_event;
END
$$;

ALTER FUNCTION audit_purge_plan(timestamptz) OWNER TO clinical_audit_purger;
ALTER FUNCTION audit_purge_prefix(timestamptz, bigint, bytea, jsonb) OWNER TO clinical_audit_purger;
REVOKE ALL ON FUNCTION audit_purge_plan(timestamptz), audit_purge_prefix(timestamptz, bigint, bytea, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_purge_plan(timestamptz), audit_purge_prefix(timestamptz, bigint, bytea, jsonb)
  TO clinical_audit_svc;

-- ---------------------------------------------------------------------------
-- Agent contexts (mcp_context): an etag of context_type and context_data that
-- appending a decision leaves alone, and audit rows that name only the
-- appended decisions (not the whole array twice) and the patient they are
-- about, so that site rules apply to them in the trail.
-- ---------------------------------------------------------------------------
ALTER TABLE mcp_context ADD COLUMN context_version bigint NOT NULL DEFAULT 1;

CREATE OR REPLACE FUNCTION touch_agent_context() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF NEW.agent_id <> OLD.agent_id THEN
    RAISE EXCEPTION 'agent_id is immutable' USING ERRCODE = 'check_violation';
  END IF;
  NEW.last_updated := now();
  NEW.row_version := OLD.row_version + 1;
  NEW.context_version := OLD.context_version
    + CASE WHEN NEW.context_type IS DISTINCT FROM OLD.context_type
             OR NEW.context_data IS DISTINCT FROM OLD.context_data THEN 1 ELSE 0 END;
  RETURN NEW;
END
$$;

CREATE FUNCTION record_agent_context_change() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
DECLARE
  old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
  new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
  change jsonb;
  appended jsonb;
  old_count integer;
  patients uuid[];
BEGIN
  IF TG_OP = 'UPDATE' THEN
    SELECT jsonb_build_object(
             'old', coalesce(jsonb_object_agg(o.key, o.value), '{}'::jsonb),
             'new', coalesce(jsonb_object_agg(o.key, new_row -> o.key), '{}'::jsonb))
      INTO change
      FROM jsonb_each(old_row - 'decisions') AS o
     WHERE new_row -> o.key IS DISTINCT FROM o.value;
    IF NEW.decisions IS DISTINCT FROM OLD.decisions THEN
      old_count := jsonb_array_length(OLD.decisions);
      IF jsonb_array_length(NEW.decisions) > old_count
         AND (old_count = 0
              OR jsonb_path_query_array(NEW.decisions, '$[0 to $last]', jsonb_build_object('last', old_count - 1))
                 = OLD.decisions) THEN
        SELECT jsonb_agg(d.value ORDER BY d.ordinality) INTO appended
          FROM jsonb_array_elements(NEW.decisions) WITH ORDINALITY AS d
         WHERE d.ordinality > old_count;
        change := jsonb_set(change, '{new,decisions_appended}', appended);
      ELSE
        change := jsonb_set(jsonb_set(change, '{old,decisions}', OLD.decisions), '{new,decisions}', NEW.decisions);
        appended := NEW.decisions || OLD.decisions;
      END IF;
    END IF;
  ELSE
    change := jsonb_build_object('old', old_row, 'new', new_row);
    appended := coalesce(NEW.decisions, OLD.decisions);
  END IF;
  SELECT array_agg(DISTINCT (d.value ->> 'patient_id')::uuid) INTO patients
    FROM jsonb_array_elements(coalesce(appended, '[]'::jsonb)) AS d
   WHERE coalesce(d.value ->> 'patient_id', '') <> '';

  INSERT INTO audit_events (event_type, entity_type, entity_id, entity_key, patient_id, user_id,
                            action, payload, ip_address, request_id, trace_id, reason)
  VALUES ('DATA_CHANGE', 'agent_context', NULL, coalesce(NEW.agent_id, OLD.agent_id),
          CASE WHEN cardinality(patients) = 1 THEN patients[1] END,
          audit_actor(), TG_OP, change,
          audit_context('client_ip')::inet, audit_context('request_id'),
          audit_context('trace_id'), audit_context('reason'));
  RETURN NULL;
END
$$;

DROP TRIGGER mcp_context_audit ON mcp_context;
CREATE TRIGGER mcp_context_audit AFTER INSERT OR UPDATE OR DELETE ON mcp_context
  FOR EACH ROW EXECUTE FUNCTION record_agent_context_change();

-- Events about entities keyed by text (agent contexts): ListAuditEvents by entity.
CREATE INDEX audit_events_entity_key_idx ON audit_events (entity_key, "timestamp" DESC, event_id DESC)
  WHERE entity_id IS NULL;

-- ---------------------------------------------------------------------------
-- Grants.
-- ---------------------------------------------------------------------------
REVOKE ALL ON audit_chain, audit_chain_head, audit_chain_anchors, audit_retention_policy FROM PUBLIC;
GRANT SELECT ON audit_chain, audit_chain_head, audit_chain_anchors, audit_retention_policy TO clinical_audit_svc;
GRANT SELECT, DELETE ON audit_events, audit_chain TO clinical_audit_purger;
GRANT INSERT ON audit_events, audit_chain_anchors TO clinical_audit_purger;
GRANT SELECT ON audit_chain_anchors, audit_retention_policy TO clinical_audit_purger;

-- Down Migration
