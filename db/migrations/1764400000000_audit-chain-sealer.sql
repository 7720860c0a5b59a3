-- Up Migration

-- ---------------------------------------------------------------------------
-- The hash chain is sealed in batches shortly after commit, instead of at
-- each commit.
--
-- Sealing at commit held the chain head's row lock from each audited
-- transaction's seal to the end of its commit, WAL flush included: every
-- audited write in the platform queued behind the one before it, which
-- capped single-row writes at a few hundred per second. Now each audited
-- INSERT only records its events in audit_chain_pending (an insert, no lock
-- shared with other writers); audit-svc's sealer chains what is pending
-- every few hundred milliseconds, in one transaction per batch, under an
-- advisory lock so that one replica seals at a time.
--
-- Pending rows become visible only when their transaction commits, so a
-- transaction that commits late is sealed in a later batch: it neither breaks
-- the chain nor escapes it. Chain order is seal order: event_seq order within
-- a batch. An event that is neither chained nor pending was written outside
-- the services (VerifyAuditTrail reports it as INSERTED); pending events are
-- reported as not yet chained.
-- ---------------------------------------------------------------------------

CREATE TABLE audit_chain_pending (
  event_seq bigint PRIMARY KEY
);

-- Records the events an INSERT statement wrote, if a service or an audit
-- trigger wrote them (as before: anything else is left out of the chain).
CREATE OR REPLACE FUNCTION audit_chain_collect() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF pg_trigger_depth() < 2 AND current_user NOT IN (
       'clinical_patient_svc', 'clinical_vitals_svc', 'clinical_audit_svc', 'clinical_analytics_svc',
       'clinical_audit_purger') THEN
    RETURN NULL;
  END IF;
  INSERT INTO audit_chain_pending (event_seq) SELECT event_seq FROM inserted;
  RETURN NULL;
END
$$;

DROP TRIGGER audit_events_chain_seal ON audit_events;
DROP FUNCTION audit_chain_seal();
DROP FUNCTION audit_chain_seal_needed();

-- Links the hashes of `content_hashes` after `previous`, in order. Linear:
-- FOREACH walks the array once and array_append grows it in place (indexing
-- a bytea[] by position rescans it from the start each time, which made
-- sealing a large batch quadratic).
CREATE OR REPLACE FUNCTION audit_chain_link(previous bytea, content_hashes bytea[]) RETURNS bytea[]
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
  AS $$
DECLARE
  linked bytea[] := '{}';
  content bytea;
BEGIN
  FOREACH content IN ARRAY coalesce(content_hashes, '{}') LOOP
    previous := sha256(previous || content);
    linked := array_append(linked, previous);
  END LOOP;
  RETURN linked;
END
$$;

-- Chains up to `max_events` pending events (the oldest first) after the head,
-- and returns how many. Returns 0 at once when another sealer holds the lock.
CREATE FUNCTION audit_chain_seal_pending(max_events integer) RETURNS integer
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
DECLARE
  seqs bigint[];
  digests bytea[];
  hashes bytea[];
  head_sequence bigint;
  head_hash bytea;
  n integer;
BEGIN
  IF NOT pg_try_advisory_xact_lock(hashtext('audit_chain_seal')) THEN
    RETURN 0;
  END IF;
  SELECT array_agg(s.event_seq ORDER BY s.event_seq), array_agg(s.content_hash ORDER BY s.event_seq)
    INTO seqs, digests
    FROM (SELECT e.event_seq,
                 audit_event_content_hash(e.event_id, e.event_seq, e.event_type, e.entity_type, e.entity_id,
                   e.entity_key, e.patient_id, e.user_id, e.action, e.payload, e.ip_address, e."timestamp",
                   e.request_id, e.trace_id, e.reason, e.db_role) AS content_hash
            FROM audit_chain_pending AS p
            JOIN audit_events AS e USING (event_seq)
           ORDER BY p.event_seq
           LIMIT max_events) AS s;
  n := coalesce(array_length(seqs, 1), 0);
  IF n = 0 THEN
    RETURN 0;
  END IF;
  SELECT sequence_number, row_hash INTO head_sequence, head_hash FROM audit_chain_head WHERE singleton FOR UPDATE;
  hashes := audit_chain_link(head_hash, digests);
  -- Each entry's previous hash is the entry before it: the head, then the hashes shifted by one.
  INSERT INTO audit_chain (sequence_number, event_seq, previous_hash, content_hash, row_hash)
  SELECT head_sequence + u.position, u.event_seq, u.previous_hash, u.content_hash, u.row_hash
    FROM unnest(seqs, digests, hashes, array_prepend(head_hash, hashes[1:n - 1]))
         WITH ORDINALITY AS u(event_seq, content_hash, row_hash, previous_hash, position);
  UPDATE audit_chain_head SET sequence_number = head_sequence + n, row_hash = hashes[n] WHERE singleton;
  DELETE FROM audit_chain_pending WHERE event_seq = ANY(seqs);
  RETURN n;
END
$$;

REVOKE ALL ON audit_chain_pending FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_chain_seal_pending(integer) FROM PUBLIC;
GRANT INSERT ON audit_chain_pending
  TO clinical_patient_svc, clinical_vitals_svc, clinical_audit_svc, clinical_analytics_svc;
GRANT INSERT ON audit_chain_pending TO clinical_audit_purger;
GRANT SELECT ON audit_chain_pending TO clinical_audit_svc;
GRANT EXECUTE ON FUNCTION audit_chain_seal_pending(integer) TO clinical_audit_svc;

-- Down Migration
