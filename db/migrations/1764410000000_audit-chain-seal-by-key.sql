-- Up Migration

-- The sealer reads the queue first, then the queued events by key. Its first
-- version joined queue and trail under a LIMIT of a whole batch, for which the
-- planner scanned the entire trail on every tick (tens of milliseconds of
-- database time every 200 ms, however few events were queued).
CREATE OR REPLACE FUNCTION audit_chain_seal_pending(max_events integer) RETURNS integer
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
  -- The queue first, then its events by key: a join with a large LIMIT would
  -- have the planner scan the whole trail on every tick.
  SELECT array_agg(q.event_seq ORDER BY q.event_seq) INTO seqs
    FROM (SELECT event_seq FROM audit_chain_pending ORDER BY event_seq LIMIT max_events) AS q;
  IF seqs IS NULL THEN
    RETURN 0;
  END IF;
  SELECT array_agg(s.event_seq ORDER BY s.event_seq), array_agg(s.content_hash ORDER BY s.event_seq)
    INTO seqs, digests
    FROM (SELECT e.event_seq,
                 audit_event_content_hash(e.event_id, e.event_seq, e.event_type, e.entity_type, e.entity_id,
                   e.entity_key, e.patient_id, e.user_id, e.action, e.payload, e.ip_address, e."timestamp",
                   e.request_id, e.trace_id, e.reason, e.db_role) AS content_hash
            FROM audit_events AS e
           WHERE e.event_seq = ANY(seqs)) AS s;
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

-- Down Migration
