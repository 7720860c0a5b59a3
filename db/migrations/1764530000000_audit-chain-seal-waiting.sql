-- Up Migration

-- Seals like audit_chain_seal_pending, but first waits for another sealer at
-- work instead of returning 0 at once. For callers that must see every
-- committed event chained when it returns (VerifyAuditTrail, the retention
-- purge); the scheduled tick keeps skipping. The lock is the one
-- audit_chain_seal_pending takes, held here until the end of the caller's
-- transaction, so its own try succeeds at once (same session).
CREATE FUNCTION audit_chain_seal_pending_waiting(max_events integer) RETURNS integer
  LANGUAGE plpgsql SET search_path = public, pg_temp
  AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('audit_chain_seal'));
  RETURN audit_chain_seal_pending(max_events);
END
$$;

REVOKE ALL ON FUNCTION audit_chain_seal_pending_waiting(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_chain_seal_pending_waiting(integer) TO clinical_audit_svc;

-- Down Migration
