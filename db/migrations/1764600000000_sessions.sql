-- Up Migration

-- ---------------------------------------------------------------------------
-- Sessions: the source of truth for whether a token's `sid` is live. Redis
-- caches the answer (a key per session, sliding with use); a Redis that lost
-- its data refills from here, so no caller is logged out by it, and a
-- revocation here holds whatever Redis says once its cache entry is replaced.
-- A session is live while it is not revoked, not past its absolute end, and
-- used within the idle timeout; `last_seen_at` is written back by the
-- services every fraction of that timeout, not on every call.
-- ---------------------------------------------------------------------------
CREATE TABLE sessions (
  sid           varchar(100) PRIMARY KEY,
  sub           varchar(200) NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL,
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at    timestamptz,
  revoked_by    varchar(200),
  revoke_reason text,
  CONSTRAINT sessions_revocation_whole CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);

CREATE INDEX sessions_sub_idx ON sessions (sub, created_at DESC);

-- Opening and ending a session are audited (not the write-back of its last use).
CREATE TRIGGER sessions_audit_open AFTER INSERT ON sessions
  FOR EACH ROW EXECUTE FUNCTION record_row_change('session', 'sid', 'text');
CREATE TRIGGER sessions_audit_revoke AFTER UPDATE OF revoked_at ON sessions
  FOR EACH ROW EXECUTE FUNCTION record_row_change('session', 'sid', 'text');

-- Every service checks sessions and writes back their last use; audit-svc
-- lists and revokes them. Sessions are opened by the issuing side (the
-- database owner: `npm run token`, the identity integration), never by a service.
GRANT SELECT (sid, expires_at, last_seen_at, revoked_at) ON sessions
  TO clinical_patient_svc, clinical_vitals_svc, clinical_audit_svc, clinical_analytics_svc;
GRANT UPDATE (last_seen_at) ON sessions
  TO clinical_patient_svc, clinical_vitals_svc, clinical_audit_svc, clinical_analytics_svc;
GRANT SELECT ON sessions TO clinical_audit_svc;
GRANT UPDATE (revoked_at, revoked_by, revoke_reason) ON sessions TO clinical_audit_svc;

-- Down Migration
