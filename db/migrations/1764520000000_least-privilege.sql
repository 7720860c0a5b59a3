-- Up Migration

-- ---------------------------------------------------------------------------
-- idempotent_requests keeps the first response of each idempotent mutation,
-- and responses hold patient data. Every service may read and write only its
-- own rows (row-level security on the scope's service prefix), and rows are
-- removed once retries are no longer expected (purge_expired_idempotent_requests,
-- run by the services on a timer). The scope is text: a caller's subject may
-- be long.
-- ---------------------------------------------------------------------------
ALTER TABLE idempotent_requests ALTER COLUMN scope TYPE text;

CREATE FUNCTION idempotent_scope_allowed(scope text) RETURNS boolean
  LANGUAGE sql STABLE
  AS $$
  SELECT CASE current_user
    WHEN 'clinical_patient_svc' THEN scope LIKE '/clinical.patient.v1.%'
    WHEN 'clinical_vitals_svc' THEN scope LIKE '/clinical.vitals.v1.%' OR scope LIKE 'VitalsService/%'
    WHEN 'clinical_audit_svc' THEN scope LIKE '/clinical.audit.v1.%' OR scope LIKE 'AuditService/%'
                                   OR scope LIKE 'AgentContextService/%'
    WHEN 'clinical_analytics_svc' THEN scope LIKE '/clinical.analytics.v1.%' OR scope LIKE 'AnalyticsService/%'
    ELSE false
  END
$$;

ALTER TABLE idempotent_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY idempotent_requests_own_service ON idempotent_requests
  USING (idempotent_scope_allowed(scope))
  WITH CHECK (idempotent_scope_allowed(scope));

-- Removes stored responses older than `older_than`; returns how many.
CREATE FUNCTION purge_expired_idempotent_requests(older_than interval) RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
  WITH removed AS (DELETE FROM idempotent_requests WHERE created_at < now() - older_than RETURNING 1)
  SELECT count(*) FROM removed
$$;

REVOKE ALL ON FUNCTION purge_expired_idempotent_requests(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_expired_idempotent_requests(interval)
  TO clinical_patient_svc, clinical_vitals_svc, clinical_audit_svc, clinical_analytics_svc;

-- ---------------------------------------------------------------------------
-- analytics-svc reads only what its view aggregates: no demographics, medical
-- history or device data. (REFRESH checks the owner's column privileges.)
-- ---------------------------------------------------------------------------
REVOKE SELECT ON patients, vital_signs FROM clinical_analytics_svc;
GRANT SELECT (patient_id, site_id, protocol_id, enrollment_date, status) ON patients TO clinical_analytics_svc;
GRANT SELECT (patient_id, systolic_bp, diastolic_bp, heart_rate, temperature) ON vital_signs TO clinical_analytics_svc;

-- Down Migration
