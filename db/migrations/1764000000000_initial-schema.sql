-- Up Migration

-- ---------------------------------------------------------------------------
-- Roles. One login role per service, holding only the grants it needs. Roles are
-- cluster-wide while migrations run per database, possibly several at once (the
-- tests migrate many databases in parallel), so creation tolerates a concurrent
-- creator: the loser of the race gets unique_violation and moves on.
-- ---------------------------------------------------------------------------
DO $$
DECLARE
  service_role text;
BEGIN
  FOREACH service_role IN ARRAY ARRAY[
    'clinical_patient_svc', 'clinical_vitals_svc', 'clinical_audit_svc', 'clinical_analytics_svc'
  ] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = service_role) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT', service_role);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
      END;
    END IF;
  END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- Audit context. Services run `SET LOCAL app.user_id / app.request_id /
-- app.trace_id / app.reason / app.client_ip` at the start of each write
-- transaction; triggers read them here. Plain SQL without a context is still
-- audited, attributed to the database role.
-- ---------------------------------------------------------------------------
CREATE FUNCTION audit_context(setting text) RETURNS text
  LANGUAGE sql STABLE
  AS $$ SELECT nullif(current_setting('app.' || setting, true), '') $$;

CREATE FUNCTION audit_actor() RETURNS text
  LANGUAGE sql STABLE
  AS $$ SELECT coalesce(audit_context('user_id'), 'db:' || session_user) $$;

-- ---------------------------------------------------------------------------
-- Patients (trial subjects).
-- ---------------------------------------------------------------------------
CREATE TABLE patients (
  patient_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  subject_number  varchar(50) NOT NULL UNIQUE,
  site_id         varchar(50) NOT NULL,
  protocol_id     varchar(50) NOT NULL,
  enrollment_date date NOT NULL,
  treatment_arm   varchar(50),
  demographics    jsonb NOT NULL DEFAULT '{}'::jsonb,
  medical_history jsonb NOT NULL DEFAULT '{}'::jsonb,
  status          varchar(50) NOT NULL DEFAULT 'ENROLLED',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  -- Incremented on every update; the API's etag.
  row_version     bigint NOT NULL DEFAULT 1,
  CONSTRAINT patients_status_check
    CHECK (status IN ('SCREENING', 'SCREEN_FAILED', 'ENROLLED', 'COMPLETED', 'WITHDRAWN')),
  CONSTRAINT patients_demographics_object CHECK (jsonb_typeof(demographics) = 'object'),
  CONSTRAINT patients_medical_history_object CHECK (jsonb_typeof(medical_history) = 'object')
);

CREATE INDEX patients_site_protocol_idx ON patients (site_id, protocol_id);
-- Keyset pagination of ListPatients: newest enrollment first within a site.
CREATE INDEX patients_site_enrollment_idx ON patients (site_id, enrollment_date DESC, patient_id DESC);
CREATE INDEX patients_demographics_gin ON patients USING gin (demographics jsonb_path_ops);
CREATE INDEX patients_medical_history_gin ON patients USING gin (medical_history jsonb_path_ops);

-- ---------------------------------------------------------------------------
-- Clinical documents. `documents` holds each document's current version (the
-- seed's table and meaning); `document_versions` keeps every version ever
-- written, immutably. A trigger files each new version, so plain SQL inserts
-- are versioned too.
-- ---------------------------------------------------------------------------
CREATE TABLE documents (
  document_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  patient_id    uuid NOT NULL REFERENCES patients (patient_id),
  document_type varchar(50) NOT NULL,
  title         varchar(500) NOT NULL,
  content       jsonb NOT NULL DEFAULT '{}'::jsonb,
  metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
  version       integer NOT NULL DEFAULT 1,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  created_by    text NOT NULL DEFAULT audit_actor(),
  row_version   bigint NOT NULL DEFAULT 1,
  CONSTRAINT documents_type_check CHECK (document_type IN (
    'protocol', 'consent', 'csr', 'crf', 'lab_report', 'adverse_event', 'imaging', 'other')),
  CONSTRAINT documents_version_positive CHECK (version >= 1),
  CONSTRAINT documents_content_object CHECK (jsonb_typeof(content) = 'object'),
  CONSTRAINT documents_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

CREATE INDEX documents_patient_idx ON documents (patient_id, created_at DESC, document_id DESC);
CREATE INDEX documents_content_gin ON documents USING gin (content jsonb_path_ops);
CREATE INDEX documents_metadata_gin ON documents USING gin (metadata jsonb_path_ops);

CREATE TABLE document_versions (
  document_id uuid NOT NULL REFERENCES documents (document_id),
  version     integer NOT NULL,
  title       varchar(500) NOT NULL,
  content     jsonb NOT NULL,
  metadata    jsonb NOT NULL,
  created_at  timestamptz NOT NULL,
  created_by  text NOT NULL,
  reason      text,
  PRIMARY KEY (document_id, version)
);

-- ---------------------------------------------------------------------------
-- Vital signs: a time series per patient.
-- ---------------------------------------------------------------------------
CREATE TABLE vital_signs (
  vital_id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  patient_id       uuid NOT NULL REFERENCES patients (patient_id),
  visit_date       date,
  measurement_time timestamptz NOT NULL,
  systolic_bp      integer,
  diastolic_bp     integer,
  heart_rate       integer,
  temperature      numeric(4, 1),
  data_batch       jsonb,
  recorded_at      timestamptz NOT NULL DEFAULT now(),
  -- Physiological bounds, enforced here too so that no path writes nonsense.
  CONSTRAINT vital_signs_systolic_range CHECK (systolic_bp BETWEEN 40 AND 300),
  CONSTRAINT vital_signs_diastolic_range CHECK (diastolic_bp BETWEEN 20 AND 200),
  CONSTRAINT vital_signs_heart_rate_range CHECK (heart_rate BETWEEN 20 AND 300),
  CONSTRAINT vital_signs_temperature_range CHECK (temperature BETWEEN 25.0 AND 45.0)
);

CREATE INDEX vital_signs_patient_time_idx ON vital_signs (patient_id, measurement_time DESC);

-- ---------------------------------------------------------------------------
-- AI-agent context (the seed's MCP context store).
-- ---------------------------------------------------------------------------
CREATE TABLE mcp_context (
  agent_id     varchar(100) PRIMARY KEY,
  context_type varchar(100) NOT NULL,
  context_data jsonb NOT NULL DEFAULT '{}'::jsonb,
  decisions    jsonb NOT NULL DEFAULT '[]'::jsonb,
  last_updated timestamptz NOT NULL DEFAULT now(),
  created_at   timestamptz NOT NULL DEFAULT now(),
  row_version  bigint NOT NULL DEFAULT 1,
  CONSTRAINT mcp_context_decisions_array CHECK (jsonb_typeof(decisions) = 'array')
);

CREATE INDEX mcp_context_type_idx ON mcp_context (context_type, agent_id);

-- ---------------------------------------------------------------------------
-- Audit trail: every write (by trigger, in the writing transaction) and every
-- read of patient data (recorded by the services). Append-only: see below.
-- ---------------------------------------------------------------------------
CREATE TABLE audit_events (
  event_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- Insertion order; keyset pagination and tamper evidence build on it.
  event_seq   bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  event_type  varchar(50) NOT NULL,
  entity_type varchar(50) NOT NULL,
  entity_id   uuid,
  -- The entity's key as text, for entities not keyed by UUID (agent contexts).
  entity_key  varchar(200),
  patient_id  uuid,
  user_id     varchar(200) NOT NULL,
  action      varchar(50) NOT NULL,
  payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
  ip_address  inet,
  "timestamp" timestamptz NOT NULL DEFAULT now(),
  request_id  varchar(100),
  trace_id    varchar(64),
  reason      text,
  db_role     name NOT NULL DEFAULT session_user
);

CREATE INDEX audit_events_patient_idx ON audit_events (patient_id, "timestamp" DESC, event_seq DESC)
  WHERE patient_id IS NOT NULL;
CREATE INDEX audit_events_entity_idx ON audit_events (entity_type, entity_id, "timestamp" DESC);
CREATE INDEX audit_events_user_idx ON audit_events (user_id, "timestamp" DESC);
CREATE INDEX audit_events_timestamp_idx ON audit_events ("timestamp" DESC);

-- Refuses any change to an append-only table, whoever asks. Privileges already
-- keep the services out; this also stops the owner and superusers that forget.
CREATE FUNCTION refuse_change() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER document_versions_append_only BEFORE UPDATE OR DELETE ON document_versions
  FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER document_versions_no_truncate BEFORE TRUNCATE ON document_versions
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- ---------------------------------------------------------------------------
-- Row bookkeeping.
-- ---------------------------------------------------------------------------
CREATE FUNCTION touch_row() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  NEW.updated_at := now();
  NEW.row_version := OLD.row_version + 1;
  RETURN NEW;
END
$$;

CREATE TRIGGER patients_touch BEFORE UPDATE ON patients
  FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE TRIGGER documents_touch BEFORE UPDATE ON documents
  FOR EACH ROW EXECUTE FUNCTION touch_row();

CREATE FUNCTION touch_agent_context() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  NEW.last_updated := now();
  NEW.row_version := OLD.row_version + 1;
  RETURN NEW;
END
$$;

CREATE TRIGGER mcp_context_touch BEFORE UPDATE ON mcp_context
  FOR EACH ROW EXECUTE FUNCTION touch_agent_context();

-- Files every new document version; an update must move to the next version.
CREATE FUNCTION file_document_version() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NEW.document_id <> OLD.document_id OR NEW.patient_id <> OLD.patient_id
       OR NEW.document_type <> OLD.document_type THEN
      RAISE EXCEPTION 'document identity is immutable' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.version <> OLD.version + 1 THEN
      RAISE EXCEPTION 'a document update must create version %', OLD.version + 1
        USING ERRCODE = 'check_violation';
    END IF;
  END IF;
  INSERT INTO document_versions (document_id, version, title, content, metadata, created_at, created_by, reason)
  VALUES (NEW.document_id, NEW.version, NEW.title, NEW.content, NEW.metadata,
          CASE WHEN TG_OP = 'INSERT' THEN NEW.created_at ELSE NEW.updated_at END,
          CASE WHEN TG_OP = 'INSERT' THEN NEW.created_by ELSE audit_actor() END,
          audit_context('reason'));
  RETURN NULL;
END
$$;

CREATE TRIGGER documents_file_version AFTER INSERT OR UPDATE ON documents
  FOR EACH ROW EXECUTE FUNCTION file_document_version();

-- ---------------------------------------------------------------------------
-- Write auditing. Row triggers for patients, documents and agent contexts
-- write one event per changed row, in the same transaction, with the old and
-- new values (only the changed columns for an update).
-- Arguments: entity type, key column, whether the key is a UUID.
-- ---------------------------------------------------------------------------
CREATE FUNCTION record_row_change() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
DECLARE
  entity_type text := TG_ARGV[0];
  key_column  text := TG_ARGV[1];
  key_is_uuid boolean := TG_ARGV[2] = 'uuid';
  old_row     jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
  new_row     jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
  any_row     jsonb := coalesce(new_row, old_row);
  change      jsonb;
BEGIN
  IF TG_OP = 'UPDATE' THEN
    SELECT jsonb_build_object(
             'old', coalesce(jsonb_object_agg(o.key, o.value), '{}'::jsonb),
             'new', coalesce(jsonb_object_agg(o.key, new_row -> o.key), '{}'::jsonb))
      INTO change
      FROM jsonb_each(old_row) AS o
     WHERE new_row -> o.key IS DISTINCT FROM o.value;
  ELSE
    change := jsonb_build_object('old', old_row, 'new', new_row);
  END IF;

  INSERT INTO audit_events (event_type, entity_type, entity_id, entity_key, patient_id, user_id,
                            action, payload, ip_address, request_id, trace_id, reason)
  VALUES ('DATA_CHANGE', entity_type,
          CASE WHEN key_is_uuid THEN (any_row ->> key_column)::uuid END,
          any_row ->> key_column,
          (any_row ->> 'patient_id')::uuid,
          audit_actor(), TG_OP, change,
          audit_context('client_ip')::inet, audit_context('request_id'),
          audit_context('trace_id'), audit_context('reason'));
  RETURN NULL;
END
$$;

CREATE TRIGGER patients_audit AFTER INSERT OR UPDATE OR DELETE ON patients
  FOR EACH ROW EXECUTE FUNCTION record_row_change('patient', 'patient_id', 'uuid');
CREATE TRIGGER documents_audit AFTER INSERT OR UPDATE OR DELETE ON documents
  FOR EACH ROW EXECUTE FUNCTION record_row_change('document', 'document_id', 'uuid');
CREATE TRIGGER mcp_context_audit AFTER INSERT OR UPDATE OR DELETE ON mcp_context
  FOR EACH ROW EXECUTE FUNCTION record_row_change('agent_context', 'agent_id', 'text');

-- Vital signs arrive in bulk, so they are audited once per statement and
-- patient (transition tables), not once per reading: the event names the
-- readings by count, time range, ids and a digest of their values.
CREATE FUNCTION record_vital_signs_change() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
  AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO audit_events (event_type, entity_type, entity_id, entity_key, patient_id, user_id,
                              action, payload, ip_address, request_id, trace_id, reason)
    SELECT 'DATA_CHANGE', 'vital_signs', n.patient_id, n.patient_id::text, n.patient_id,
           audit_actor(), 'INSERT',
           jsonb_build_object(
             'count', count(*),
             'first_measurement_time', min(n.measurement_time),
             'last_measurement_time', max(n.measurement_time),
             'new_digest', encode(sha256(convert_to(string_agg(to_jsonb(n)::text, E'\n' ORDER BY n.vital_id), 'UTF8')), 'hex')),
           audit_context('client_ip')::inet, audit_context('request_id'),
           audit_context('trace_id'), audit_context('reason')
      FROM new_rows AS n
     GROUP BY n.patient_id;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO audit_events (event_type, entity_type, entity_id, entity_key, patient_id, user_id,
                              action, payload, ip_address, request_id, trace_id, reason)
    SELECT 'DATA_CHANGE', 'vital_signs', o.patient_id, o.patient_id::text, o.patient_id,
           audit_actor(), 'UPDATE',
           jsonb_build_object('count', count(*),
                              'old', jsonb_agg(to_jsonb(o) ORDER BY o.vital_id),
                              'new', jsonb_agg(to_jsonb(n) ORDER BY n.vital_id)),
           audit_context('client_ip')::inet, audit_context('request_id'),
           audit_context('trace_id'), audit_context('reason')
      FROM old_rows AS o JOIN new_rows AS n USING (vital_id)
     GROUP BY o.patient_id;
  ELSE
    INSERT INTO audit_events (event_type, entity_type, entity_id, entity_key, patient_id, user_id,
                              action, payload, ip_address, request_id, trace_id, reason)
    SELECT 'DATA_CHANGE', 'vital_signs', o.patient_id, o.patient_id::text, o.patient_id,
           audit_actor(), 'DELETE',
           jsonb_build_object('count', count(*), 'old', jsonb_agg(to_jsonb(o) ORDER BY o.vital_id)),
           audit_context('client_ip')::inet, audit_context('request_id'),
           audit_context('trace_id'), audit_context('reason')
      FROM old_rows AS o
     GROUP BY o.patient_id;
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER vital_signs_audit_insert AFTER INSERT ON vital_signs
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION record_vital_signs_change();
CREATE TRIGGER vital_signs_audit_update AFTER UPDATE ON vital_signs
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION record_vital_signs_change();
CREATE TRIGGER vital_signs_audit_delete AFTER DELETE ON vital_signs
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION record_vital_signs_change();

-- ---------------------------------------------------------------------------
-- Idempotent mutations: the first response to a request_id is kept and
-- returned to retries. The scope names the method and the caller.
-- ---------------------------------------------------------------------------
CREATE TABLE idempotent_requests (
  scope        varchar(200) NOT NULL,
  request_id   uuid NOT NULL,
  request_hash bytea NOT NULL,
  response     bytea NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, request_id)
);

CREATE INDEX idempotent_requests_created_idx ON idempotent_requests (created_at);

-- ---------------------------------------------------------------------------
-- Per-site analytics, refreshed concurrently by analytics-svc (its owner).
-- The seed's columns first, then counts by status and vital-sign averages.
-- ---------------------------------------------------------------------------
CREATE MATERIALIZED VIEW patient_analytics AS
WITH vitals_per_patient AS (
  SELECT patient_id,
         count(*)            AS vitals_count,
         sum(systolic_bp)    AS systolic_sum,  count(systolic_bp)  AS systolic_n,
         sum(diastolic_bp)   AS diastolic_sum, count(diastolic_bp) AS diastolic_n,
         sum(heart_rate)     AS heart_rate_sum, count(heart_rate)  AS heart_rate_n,
         sum(temperature)    AS temperature_sum, count(temperature) AS temperature_n
    FROM vital_signs
   GROUP BY patient_id
)
SELECT p.site_id,
       p.protocol_id,
       count(*)::bigint                                                     AS patient_count,
       round(avg(current_date - p.enrollment_date), 2)                      AS avg_days_enrolled,
       coalesce(sum(v.vitals_count), 0)::bigint                             AS total_vitals,
       count(*) FILTER (WHERE p.status = 'SCREENING')::bigint               AS screening_count,
       count(*) FILTER (WHERE p.status = 'SCREEN_FAILED')::bigint           AS screen_failed_count,
       count(*) FILTER (WHERE p.status = 'ENROLLED')::bigint                AS enrolled_count,
       count(*) FILTER (WHERE p.status = 'COMPLETED')::bigint               AS completed_count,
       count(*) FILTER (WHERE p.status = 'WITHDRAWN')::bigint               AS withdrawn_count,
       round(sum(v.systolic_sum)::numeric / nullif(sum(v.systolic_n), 0), 2)       AS avg_systolic_bp,
       round(sum(v.diastolic_sum)::numeric / nullif(sum(v.diastolic_n), 0), 2)     AS avg_diastolic_bp,
       round(sum(v.heart_rate_sum)::numeric / nullif(sum(v.heart_rate_n), 0), 2)   AS avg_heart_rate,
       round(sum(v.temperature_sum)::numeric / nullif(sum(v.temperature_n), 0), 2) AS avg_temperature
  FROM patients AS p
  LEFT JOIN vitals_per_patient AS v USING (patient_id)
 GROUP BY p.site_id, p.protocol_id;

-- Required by REFRESH MATERIALIZED VIEW CONCURRENTLY.
CREATE UNIQUE INDEX patient_analytics_site_protocol_idx ON patient_analytics (site_id, protocol_id);

-- ---------------------------------------------------------------------------
-- Grants: least privilege per service. Nothing is granted to PUBLIC.
-- ---------------------------------------------------------------------------
REVOKE ALL ON patients, documents, document_versions, vital_signs, mcp_context, audit_events,
              idempotent_requests, patient_analytics FROM PUBLIC;

-- patient-svc: patients and documents; reads and writes, never deletes.
GRANT SELECT, INSERT, UPDATE ON patients, documents TO clinical_patient_svc;
GRANT SELECT ON document_versions TO clinical_patient_svc;
GRANT SELECT, INSERT, UPDATE ON idempotent_requests TO clinical_patient_svc;
GRANT INSERT ON audit_events TO clinical_patient_svc;

-- vitals-svc: appends readings; sees only what it needs of a patient.
GRANT SELECT (patient_id, site_id, status) ON patients TO clinical_vitals_svc;
GRANT SELECT, INSERT ON vital_signs TO clinical_vitals_svc;
GRANT SELECT, INSERT, UPDATE ON idempotent_requests TO clinical_vitals_svc;
GRANT INSERT ON audit_events TO clinical_vitals_svc;

-- audit-svc: reads the trail, keeps the agent contexts.
GRANT SELECT, INSERT ON audit_events TO clinical_audit_svc;
GRANT SELECT (patient_id, site_id) ON patients TO clinical_audit_svc;
GRANT SELECT, INSERT, UPDATE ON mcp_context TO clinical_audit_svc;
GRANT SELECT, INSERT, UPDATE ON idempotent_requests TO clinical_audit_svc;

-- analytics-svc: owns the view (only an owner may refresh it) and reads what it aggregates.
GRANT SELECT ON patients, vital_signs TO clinical_analytics_svc;
GRANT INSERT ON audit_events TO clinical_analytics_svc;
ALTER MATERIALIZED VIEW patient_analytics OWNER TO clinical_analytics_svc;

-- Down Migration
