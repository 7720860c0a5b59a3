-- Up Migration

-- ---------------------------------------------------------------------------
-- Bulk ingestion of vital signs without per-reading work in the database.
--
-- vitals-svc's bulk writes (BatchRecordVitals, StreamVitals) cost PostgreSQL
-- about three times what a COPY of the same rows into a bare table costs: the
-- foreign key checks every reading against patients on its own (a lookup and
-- a row lock per reading), and the audit trigger copies every reading into a
-- transition table, then serialises each one to JSON to digest it. The service already
-- knows what that work finds: it has checked the patients before writing, and
-- it holds every reading it writes. So bulk readings go to their own table,
-- vital_signs_bulk, a child of vital_signs: reads of vital_signs see both, and
-- everything else (plain SQL, RecordVitals) writes vital_signs and is audited
-- by its triggers as before. Existing rows stay where they are.
--
-- vital_signs_bulk has no per-reading check beyond its CHECK constraints:
--   - One index, the primary key (patient_id, measurement_time, vital_id): the
--     reads are by patient and time range, newest first, ties by id, exactly
--     this order. No separate index on vital_id, a UUID version 7 the service
--     makes (74 random bits): nothing looks a reading up by its id alone, and
--     a second index cost a quarter of the COPY. vital_signs' own primary key
--     covers only its own rows, as with any inheritance child.
--   - No foreign key. The audit claim below locks each patient the events
--     name (FOR KEY SHARE, once per statement and patient, as the foreign key
--     did once per reading) and refuses a patient that does not exist; a
--     patient with bulk readings cannot be deleted (trigger on patients).
--   - No transition table. The writer writes the audit events itself, one
--     per statement and patient (count, first and last measurement time, a
--     digest of the rows), in the same transaction, and the database checks
--     that they are there and account for every row:
--
--   1. The writer inserts its events into audit_events as its own role (so
--      they are chained like every service-written event), then passes their
--      event_id to claim_vital_signs_bulk_events(), which accepts them only
--      if they are this transaction's own, unclaimed vital_signs INSERT events
--      of existing patients, and records that the next statement may write
--      exactly the sum of their counts. record_vital_signs_bulk_audit() does
--      both in one call.
--   2. A statement writing vital_signs_bulk without such a claim is refused
--      before it writes (BEFORE statement trigger); one that wrote another
--      number of rows than claimed is refused after (AFTER statement trigger,
--      counting with pg_stat_get_xact_tuples_inserted, the transaction's own
--      insert counter for the table, which no role can change; were counting
--      turned off (track_counts, superusers only), every bulk write would be
--      refused).
--   3. A transaction that claimed rows and then did not write them cannot
--      commit (deferred constraint trigger): no event names rows that were
--      never written.
--
-- What the database does not check without reading the rows: that each row
-- belongs to the patient whose event counts it, and the digest. Those are the
-- service's, as the actor and request id in every event already are.
-- Claims must be made outside savepoints (an event's xmin must be the
-- transaction's own id); vitals-svc uses none.
-- ---------------------------------------------------------------------------

CREATE TABLE vital_signs_bulk (
  CONSTRAINT vital_signs_bulk_pkey PRIMARY KEY (patient_id, measurement_time, vital_id)
) INHERITS (vital_signs);

COMMENT ON TABLE vital_signs_bulk IS
  'Readings written in bulk by vitals-svc (COPY), audited by events it writes in the same transaction; read through vital_signs';

-- The transaction's audit claim: the rows its declared events cover for the
-- next statement into vital_signs_bulk. One row per open transaction, removed
-- at its commit. Unlogged: a claim never outlives its transaction, and a crash
-- ends every transaction.
CREATE UNLOGGED TABLE vital_signs_bulk_claims (
  transaction_id xid8 PRIMARY KEY,
  -- Rows the declared events count, for the next statement; NULL once written.
  pending_rows   bigint,
  -- The table's insert counter when that statement began.
  counter_before bigint,
  -- The last event claimed: an event is claimed at most once.
  last_event_seq bigint NOT NULL
);

-- Step 1, the database's side: checks and records the claim of the events
-- `event_ids` (one per patient) for the next statement. SECURITY DEFINER: the
-- writer can neither read nor write the claims, nor lock patients itself.
CREATE FUNCTION claim_vital_signs_bulk_events(event_ids uuid[]) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
DECLARE
  me xid8 := pg_current_xact_id();
  claim vital_signs_bulk_claims;
  event_count integer;
  patient_ids uuid[];
  claimed_rows bigint;
  lowest_seq bigint;
  highest_seq bigint;
  well_formed boolean;
  locked integer;
BEGIN
  SELECT * INTO claim FROM vital_signs_bulk_claims WHERE transaction_id = me;
  IF claim.pending_rows IS NOT NULL THEN
    RAISE EXCEPTION 'vital_signs_bulk: the rows of the previous claim were not written yet'
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  SELECT count(*), array_agg(DISTINCT e.patient_id), sum((e.payload ->> 'count')::bigint), min(e.event_seq), max(e.event_seq),
         bool_and(e.event_type = 'DATA_CHANGE' AND e.entity_type = 'vital_signs' AND e.action = 'INSERT'
                  AND e.patient_id IS NOT NULL AND e.entity_id = e.patient_id
                  AND e.db_role = session_user AND e.xmin = me::xid
                  AND jsonb_typeof(e.payload -> 'count') = 'number' AND (e.payload ->> 'count')::bigint > 0)
    INTO event_count, patient_ids, claimed_rows, lowest_seq, highest_seq, well_formed
    FROM audit_events AS e
   WHERE e.event_id = ANY(event_ids);
  IF event_count = 0 OR event_count <> cardinality(event_ids) OR event_count <> cardinality(patient_ids)
     OR NOT well_formed OR lowest_seq <= coalesce(claim.last_event_seq, 0) THEN
    RAISE EXCEPTION 'vital_signs_bulk: a claim needs this transaction''s own unclaimed vital_signs INSERT events, one per patient'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  -- What the foreign key did per reading, once per patient and statement.
  PERFORM 1 FROM patients WHERE patient_id = ANY(patient_ids) FOR KEY SHARE;
  GET DIAGNOSTICS locked = ROW_COUNT;
  IF locked <> event_count THEN
    RAISE EXCEPTION 'vital_signs_bulk: an audit event names a patient that does not exist'
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  INSERT INTO vital_signs_bulk_claims (transaction_id, pending_rows, last_event_seq)
  VALUES (me, claimed_rows, highest_seq)
  ON CONFLICT (transaction_id) DO UPDATE SET pending_rows = excluded.pending_rows, counter_before = NULL,
                                             last_event_seq = excluded.last_event_seq;
  RETURN claimed_rows;
END
$$;

-- Step 1, the writer's side, in one call: writes one vital_signs INSERT event
-- per patient (the same payload as the triggers' events: count, first and
-- last measurement time, digest), with the transaction's audit context, as
-- the calling role, then claims them. Returns the transaction's time, which
-- is every row's recorded_at.
CREATE FUNCTION record_vital_signs_bulk_audit(patient_ids uuid[], row_counts integer[], first_times timestamptz[],
                                              last_times timestamptz[], digests text[]) RETURNS timestamptz
  LANGUAGE plpgsql SET search_path = public, pg_temp
  AS $$
DECLARE
  -- Made here rather than returned by the INSERT: RETURNING would need SELECT on audit_events.
  event_ids uuid[] := ARRAY(SELECT gen_random_uuid() FROM generate_series(1, cardinality(patient_ids)));
BEGIN
  INSERT INTO audit_events (event_id, event_type, entity_type, entity_id, entity_key, patient_id, user_id, action, payload,
                            ip_address, request_id, trace_id, reason)
  SELECT u.event_id, 'DATA_CHANGE', 'vital_signs', u.patient_id, u.patient_id::text, u.patient_id, c.actor, 'INSERT',
         jsonb_build_object('count', u.row_count, 'first_measurement_time', u.first_time,
                            'last_measurement_time', u.last_time, 'new_digest', u.digest),
         c.client_ip, c.request_id, c.trace_id, c.reason
    FROM unnest(event_ids, patient_ids, row_counts, first_times, last_times, digests)
           AS u(event_id, patient_id, row_count, first_time, last_time, digest),
         (SELECT audit_actor() AS actor, audit_context('client_ip')::inet AS client_ip, audit_context('request_id') AS request_id,
                 audit_context('trace_id') AS trace_id, audit_context('reason') AS reason) AS c;
  PERFORM claim_vital_signs_bulk_events(event_ids);
  RETURN now();
END
$$;

-- Step 2: before a statement writes vital_signs_bulk, a claim must be
-- pending; after it, the rows it wrote must be exactly the claimed ones.
CREATE FUNCTION check_vital_signs_bulk_write() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
DECLARE
  me xid8 := pg_current_xact_id();
  counter bigint := pg_stat_get_xact_tuples_inserted(TG_RELID);
  claim vital_signs_bulk_claims;
BEGIN
  SELECT * INTO claim FROM vital_signs_bulk_claims WHERE transaction_id = me FOR UPDATE;
  IF claim.pending_rows IS NULL THEN
    RAISE EXCEPTION 'vital_signs_bulk: rows must be claimed by their audit events first (record_vital_signs_bulk_audit)'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_WHEN = 'BEFORE' THEN
    UPDATE vital_signs_bulk_claims SET counter_before = counter WHERE transaction_id = me;
  ELSIF counter - claim.counter_before <> claim.pending_rows THEN
    RAISE EXCEPTION 'vital_signs_bulk: the statement wrote % rows, its audit events count %',
                    counter - claim.counter_before, claim.pending_rows
      USING ERRCODE = 'insufficient_privilege';
  ELSE
    UPDATE vital_signs_bulk_claims SET pending_rows = NULL, counter_before = NULL WHERE transaction_id = me;
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER vital_signs_bulk_claimed_before BEFORE INSERT ON vital_signs_bulk
  FOR EACH STATEMENT EXECUTE FUNCTION check_vital_signs_bulk_write();
CREATE TRIGGER vital_signs_bulk_claimed_after AFTER INSERT ON vital_signs_bulk
  FOR EACH STATEMENT EXECUTE FUNCTION check_vital_signs_bulk_write();

-- Step 3: at commit, nothing claimed may be left unwritten. Fires once per
-- transaction (the claim row is inserted once, then updated), and removes it.
CREATE FUNCTION settle_vital_signs_bulk_claim() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM vital_signs_bulk_claims WHERE transaction_id = NEW.transaction_id AND pending_rows IS NOT NULL) THEN
    RAISE EXCEPTION 'vital_signs_bulk: audit events claim rows that were never written'
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  DELETE FROM vital_signs_bulk_claims WHERE transaction_id = NEW.transaction_id;
  RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER vital_signs_bulk_claims_settled AFTER INSERT ON vital_signs_bulk_claims
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION settle_vital_signs_bulk_claim();

-- Changes to bulk readings made outside vitals-svc (it may not update or
-- delete) are audited as those of vital_signs: a statement naming
-- vital_signs_bulk does not fire vital_signs' statement triggers.
CREATE TRIGGER vital_signs_bulk_audit_update AFTER UPDATE ON vital_signs_bulk
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION record_vital_signs_change();
CREATE TRIGGER vital_signs_bulk_audit_delete AFTER DELETE ON vital_signs_bulk
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION record_vital_signs_change();

-- The foreign key's other half: a patient with bulk readings stays.
CREATE FUNCTION refuse_patient_with_bulk_readings() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM vital_signs_bulk WHERE patient_id = OLD.patient_id) THEN
    RAISE EXCEPTION 'patient % still has vital signs', OLD.patient_id
      USING ERRCODE = 'foreign_key_violation', TABLE = 'vital_signs_bulk';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE TRIGGER patients_keep_bulk_readings BEFORE DELETE ON patients
  FOR EACH ROW EXECUTE FUNCTION refuse_patient_with_bulk_readings();
CREATE TRIGGER patients_keep_bulk_readings_key BEFORE UPDATE OF patient_id ON patients
  FOR EACH ROW WHEN (OLD.patient_id IS DISTINCT FROM NEW.patient_id)
  EXECUTE FUNCTION refuse_patient_with_bulk_readings();

-- ---------------------------------------------------------------------------
-- Grants. vitals-svc may COPY into vital_signs_bulk (INSERT only: it reads
-- through vital_signs, whose grants cover its children) and record its audit;
-- nobody else writes it. The claims are nobody's but their functions'.
-- ---------------------------------------------------------------------------
REVOKE ALL ON vital_signs_bulk, vital_signs_bulk_claims FROM PUBLIC;
REVOKE ALL ON FUNCTION claim_vital_signs_bulk_events(uuid[]),
                       record_vital_signs_bulk_audit(uuid[], integer[], timestamptz[], timestamptz[], text[]),
                       check_vital_signs_bulk_write(), settle_vital_signs_bulk_claim(),
                       refuse_patient_with_bulk_readings() FROM PUBLIC;
GRANT INSERT ON vital_signs_bulk TO clinical_vitals_svc;
GRANT EXECUTE ON FUNCTION claim_vital_signs_bulk_events(uuid[]),
                          record_vital_signs_bulk_audit(uuid[], integer[], timestamptz[], timestamptz[], text[])
  TO clinical_vitals_svc;

-- Down Migration
