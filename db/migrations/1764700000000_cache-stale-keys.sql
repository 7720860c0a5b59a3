-- Up Migration

-- ---------------------------------------------------------------------------
-- Cache keys whose entry in Redis may be older than the database: a write
-- committed, and storing or deleting its cache entry failed (Redis away).
-- The process that failed keeps deleting the entry until Redis answers; this
-- table keeps the key beyond that process, so that one stopped or killed
-- meanwhile leaves it to the next process that starts or polls (every
-- service reads it before serving), and a Redis that comes back with its
-- data cannot serve the old entry. Keys name records by their ids only.
-- ---------------------------------------------------------------------------
CREATE TABLE cache_stale_keys (
  key        varchar(300) PRIMARY KEY,
  marked_at  timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE ON cache_stale_keys
  TO clinical_patient_svc, clinical_vitals_svc, clinical_audit_svc, clinical_analytics_svc;

-- Down Migration
