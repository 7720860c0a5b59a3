import { createTestDatabase, testServices, type TestDatabase } from '@clinical/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SERVICE_ROLES = ['clinical_patient_svc', 'clinical_vitals_svc', 'clinical_audit_svc', 'clinical_analytics_svc'];

let database: TestDatabase;
let admin: pg.Client;

async function connectAs(role: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: database.urlAs(role) });
  await client.connect();
  return client;
}

async function insertPatient(client: pg.Client, subject: string, site = 'SITE-A'): Promise<string> {
  const { rows } = await client.query<{ patient_id: string }>(
    `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, treatment_arm)
     VALUES ($1, $2, 'RA001', '2024-01-15', 'A') RETURNING patient_id`,
    [subject, site],
  );
  return rows[0]!.patient_id;
}

beforeAll(async () => {
  const { postgresUrl, templateDatabase } = testServices();
  database = await createTestDatabase(postgresUrl, templateDatabase);
  admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await database?.drop();
});

describe('schema floor', () => {
  it('keeps every seed column with its type', async () => {
    const { rows } = await admin.query<{ table_name: string; column_name: string; data_type: string }>(
      `SELECT table_name, column_name, data_type FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name IN ('patients','documents','vital_signs','audit_events','mcp_context')`,
    );
    const columns = new Map(rows.map((row) => [`${row.table_name}.${row.column_name}`, row.data_type]));
    const seed: Record<string, string> = {
      'patients.patient_id': 'uuid',
      'patients.subject_number': 'character varying',
      'patients.site_id': 'character varying',
      'patients.protocol_id': 'character varying',
      'patients.enrollment_date': 'date',
      'patients.treatment_arm': 'character varying',
      'patients.demographics': 'jsonb',
      'patients.medical_history': 'jsonb',
      'patients.status': 'character varying',
      'patients.created_at': 'timestamp with time zone',
      'patients.updated_at': 'timestamp with time zone',
      'documents.document_id': 'uuid',
      'documents.patient_id': 'uuid',
      'documents.document_type': 'character varying',
      'documents.title': 'character varying',
      'documents.content': 'jsonb',
      'documents.metadata': 'jsonb',
      'documents.version': 'integer',
      'documents.created_at': 'timestamp with time zone',
      'vital_signs.vital_id': 'uuid',
      'vital_signs.patient_id': 'uuid',
      'vital_signs.visit_date': 'date',
      'vital_signs.measurement_time': 'timestamp with time zone',
      'vital_signs.systolic_bp': 'integer',
      'vital_signs.diastolic_bp': 'integer',
      'vital_signs.heart_rate': 'integer',
      'vital_signs.temperature': 'numeric',
      'vital_signs.data_batch': 'jsonb',
      'audit_events.event_id': 'uuid',
      'audit_events.event_type': 'character varying',
      'audit_events.entity_type': 'character varying',
      'audit_events.entity_id': 'uuid',
      'audit_events.user_id': 'character varying',
      'audit_events.action': 'character varying',
      'audit_events.payload': 'jsonb',
      'audit_events.ip_address': 'inet',
      'audit_events.timestamp': 'timestamp with time zone',
      'mcp_context.agent_id': 'character varying',
      'mcp_context.context_type': 'character varying',
      'mcp_context.context_data': 'jsonb',
      'mcp_context.decisions': 'jsonb',
      'mcp_context.last_updated': 'timestamp with time zone',
    };
    for (const [column, type] of Object.entries(seed)) {
      expect(columns.get(column), column).toBe(type);
    }
  });

  it('has the seed indexes: GIN on JSONB, (site_id, protocol_id), vitals by patient and time', async () => {
    const { rows } = await admin.query<{ indexdef: string }>("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'");
    const definitions = rows.map((row) => row.indexdef);
    const has = (pattern: RegExp) => definitions.some((definition) => pattern.test(definition));
    expect(has(/ON public\.patients USING gin \(demographics/)).toBe(true);
    expect(has(/ON public\.patients USING gin \(medical_history/)).toBe(true);
    expect(has(/ON public\.documents USING gin \(content/)).toBe(true);
    expect(has(/ON public\.documents USING gin \(metadata/)).toBe(true);
    expect(has(/ON public\.patients USING btree \(site_id, protocol_id\)/)).toBe(true);
    expect(has(/ON public\.vital_signs USING btree \(patient_id, measurement_time DESC\)/)).toBe(true);
    expect(has(/UNIQUE INDEX .* ON public\.patient_analytics USING btree \(site_id, protocol_id\)/)).toBe(true);
  });
});

describe("the old system's plain SQL", () => {
  it('inserts a patient without an id, selects it and deletes it', async () => {
    const inserted = await admin.query(
      `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, treatment_arm)
       VALUES ('RA001-001', 'SITE-01', 'RA001', '2024-01-15', 'PLACEBO')`,
    );
    expect(inserted.rowCount).toBe(1);
    const { rows } = await admin.query("SELECT * FROM patients WHERE subject_number = 'RA001-001'");
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'ENROLLED', site_id: 'SITE-01', demographics: {}, medical_history: {} });
    expect(rows[0].patient_id).toMatch(/^[0-9a-f-]{36}$/);
    const deleted = await admin.query("DELETE FROM patients WHERE subject_number = 'RA001-001'");
    expect(deleted.rowCount).toBe(1);
  });

  it('runs the monitoring queries and reads the materialized view', async () => {
    const activity = await admin.query(
      'SELECT pid, usename, application_name, state, query_start FROM pg_stat_activity WHERE datname = current_database()',
    );
    expect(activity.rowCount).toBeGreaterThan(0);
    const sizes = await admin.query(
      `SELECT relname, pg_size_pretty(pg_total_relation_size(relid)) AS total_size
         FROM pg_catalog.pg_statio_user_tables ORDER BY pg_total_relation_size(relid) DESC`,
    );
    expect(sizes.rows.map((row) => row.relname)).toEqual(expect.arrayContaining(['patients', 'vital_signs', 'audit_events']));
    await admin.query('REFRESH MATERIALIZED VIEW patient_analytics');
    const view = await admin.query(
      'SELECT site_id, protocol_id, patient_count, avg_days_enrolled, total_vitals FROM patient_analytics',
    );
    expect(view.fields.map((field) => field.name)).toEqual([
      'site_id',
      'protocol_id',
      'patient_count',
      'avg_days_enrolled',
      'total_vitals',
    ]);
  });
});

describe('triggers', () => {
  it('moves updated_at and the row version on update', async () => {
    const patientId = await insertPatient(admin, 'TRG-001');
    const before = await admin.query('SELECT updated_at, row_version FROM patients WHERE patient_id = $1', [patientId]);
    await admin.query("UPDATE patients SET treatment_arm = 'B' WHERE patient_id = $1", [patientId]);
    const after = await admin.query('SELECT updated_at, row_version FROM patients WHERE patient_id = $1', [patientId]);
    expect(after.rows[0].updated_at.getTime()).toBeGreaterThanOrEqual(before.rows[0].updated_at.getTime());
    expect(Number(after.rows[0].row_version)).toBe(Number(before.rows[0].row_version) + 1);
  });

  it('audits each patient write in its transaction, with the context the service set', async () => {
    const client = await connectAs('clinical_patient_svc');
    try {
      await client.query('BEGIN');
      await client.query(
        `SELECT set_config('app.user_id', 'coordinator-7', true), set_config('app.request_id', 'req-1', true),
                set_config('app.trace_id', '0af7651916cd43dd8448eb211c80319c', true), set_config('app.reason', 'screening visit', true)`,
      );
      const patientId = await insertPatient(client, 'TRG-002');
      await client.query("UPDATE patients SET treatment_arm = 'C' WHERE patient_id = $1", [patientId]);
      await client.query('COMMIT');

      const { rows } = await admin.query(
        `SELECT action, user_id, request_id, trace_id, reason, db_role, payload, entity_type
           FROM audit_events WHERE entity_id = $1 ORDER BY event_seq`,
        [patientId],
      );
      expect(rows.map((row) => row.action)).toEqual(['INSERT', 'UPDATE']);
      for (const row of rows) {
        expect(row).toMatchObject({
          user_id: 'coordinator-7',
          request_id: 'req-1',
          trace_id: '0af7651916cd43dd8448eb211c80319c',
          reason: 'screening visit',
          db_role: 'clinical_patient_svc',
          entity_type: 'patient',
        });
      }
      expect(rows[1].payload.old.treatment_arm).toBe('A');
      expect(rows[1].payload.new.treatment_arm).toBe('C');
      expect(rows[1].payload.new).not.toHaveProperty('subject_number');
    } finally {
      await client.end();
    }
  });

  it('writes no audit row when the write rolls back', async () => {
    const before = await admin.query('SELECT count(*)::int AS n FROM audit_events');
    await admin.query('BEGIN');
    await insertPatient(admin, 'TRG-ROLLBACK');
    await admin.query('ROLLBACK');
    const after = await admin.query('SELECT count(*)::int AS n FROM audit_events');
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it('audits vital signs once per statement and patient, not once per reading', async () => {
    const first = await insertPatient(admin, 'TRG-V1');
    const second = await insertPatient(admin, 'TRG-V2');
    await admin.query(
      `INSERT INTO vital_signs (patient_id, measurement_time, systolic_bp, diastolic_bp, heart_rate, temperature)
       SELECT p, now() - make_interval(mins => g), 120, 80, 70, 36.6
         FROM unnest($1::uuid[]) AS p, generate_series(1, 250) AS g`,
      [[first, second]],
    );
    const { rows } = await admin.query(
      `SELECT patient_id, payload FROM audit_events
        WHERE entity_type = 'vital_signs' AND patient_id = ANY($1::uuid[]) ORDER BY patient_id`,
      [[first, second]],
    );
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      expect(row.payload.count).toBe(250);
      expect(row.payload.new_digest).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('files every document version and refuses to rewrite an old one', async () => {
    const patientId = await insertPatient(admin, 'TRG-DOC');
    const { rows } = await admin.query(
      `INSERT INTO documents (patient_id, document_type, title, content) VALUES ($1, 'consent', 'ICF', '{"v": 1}')
       RETURNING document_id`,
      [patientId],
    );
    const documentId = rows[0].document_id;
    await admin.query(`UPDATE documents SET version = 2, content = '{"v": 2}' WHERE document_id = $1`, [documentId]);
    await expect(admin.query(`UPDATE documents SET content = '{"v": 3}' WHERE document_id = $1`, [documentId])).rejects.toThrow(
      /must create version 3/,
    );
    const versions = await admin.query(
      'SELECT version, content FROM document_versions WHERE document_id = $1 ORDER BY version',
      [documentId],
    );
    expect(versions.rows).toEqual([
      { version: 1, content: { v: 1 } },
      { version: 2, content: { v: 2 } },
    ]);
    await expect(admin.query('DELETE FROM document_versions WHERE document_id = $1', [documentId])).rejects.toThrow(
      /append-only/,
    );
  });
});

describe('audit_events is append-only', () => {
  it.each(SERVICE_ROLES)('refuses UPDATE, DELETE and TRUNCATE to %s', async (role) => {
    const client = await connectAs(role);
    try {
      await expect(client.query("UPDATE audit_events SET user_id = 'forged'")).rejects.toThrow(/permission denied|append-only/);
      await expect(client.query('DELETE FROM audit_events')).rejects.toThrow(/permission denied|append-only/);
      await expect(client.query('TRUNCATE audit_events')).rejects.toThrow(/permission denied|append-only/);
    } finally {
      await client.end();
    }
  });

  it('refuses them to the owner too, by trigger', async () => {
    await insertPatient(admin, 'APPEND-ONLY');
    await expect(admin.query("UPDATE audit_events SET user_id = 'forged'")).rejects.toThrow(/append-only: UPDATE refused/);
    await expect(admin.query('DELETE FROM audit_events')).rejects.toThrow(/append-only: DELETE refused/);
    await expect(admin.query('TRUNCATE audit_events')).rejects.toThrow(/append-only: TRUNCATE refused/);
  });

  it('lets the services append access events', async () => {
    for (const role of ['clinical_patient_svc', 'clinical_vitals_svc', 'clinical_audit_svc']) {
      const client = await connectAs(role);
      try {
        const result = await client.query(
          `INSERT INTO audit_events (event_type, entity_type, user_id, action) VALUES ('DATA_ACCESS', 'patient', 'u', 'READ')`,
        );
        expect(result.rowCount).toBe(1);
      } finally {
        await client.end();
      }
    }
  });
});

describe('least privilege', () => {
  it('lets analytics-svc refresh its view concurrently, and no other service', async () => {
    const analytics = await connectAs('clinical_analytics_svc');
    const patients = await connectAs('clinical_patient_svc');
    try {
      await analytics.query('REFRESH MATERIALIZED VIEW patient_analytics');
      await analytics.query('REFRESH MATERIALIZED VIEW CONCURRENTLY patient_analytics');
      await expect(patients.query('REFRESH MATERIALIZED VIEW patient_analytics')).rejects.toThrow(/must be owner/);
    } finally {
      await analytics.end();
      await patients.end();
    }
  });

  it('keeps vitals-svc away from patient PHI columns and from deleting readings', async () => {
    const vitals = await connectAs('clinical_vitals_svc');
    try {
      await expect(vitals.query('SELECT demographics FROM patients')).rejects.toThrow(/permission denied/);
      await expect(vitals.query('SELECT patient_id, site_id, status FROM patients')).resolves.toBeDefined();
      await expect(vitals.query('DELETE FROM vital_signs')).rejects.toThrow(/permission denied/);
    } finally {
      await vitals.end();
    }
  });
});

describe('idempotent requests', () => {
  it('let each service read and write only its own stored responses', async () => {
    const patients = await connectAs('clinical_patient_svc');
    const vitals = await connectAs('clinical_vitals_svc');
    try {
      await patients.query(
        `INSERT INTO idempotent_requests (scope, request_id, request_hash, response)
         VALUES ('/clinical.patient.v1.PatientService/CreatePatient:' || repeat('s', 300), gen_random_uuid(), '\\x00', '\\x01')`,
      );
      await expect(
        patients.query(
          `INSERT INTO idempotent_requests (scope, request_id, request_hash, response)
           VALUES ('VitalsService/RecordVitals:x', gen_random_uuid(), '\\x00', '\\x01')`,
        ),
      ).rejects.toThrow(/row-level security/);
      expect((await vitals.query("SELECT count(*)::int AS n FROM idempotent_requests WHERE scope LIKE '/clinical.patient.v1.%'")).rows[0].n).toBe(0);
      expect((await vitals.query('UPDATE idempotent_requests SET response = NULL')).rowCount).toBe(0);
    } finally {
      await patients.end();
      await vitals.end();
    }
  });

  it('expire: the purge removes stored responses past their retention', async () => {
    await admin.query(
      `INSERT INTO idempotent_requests (scope, request_id, request_hash, response, created_at)
       VALUES ('/clinical.patient.v1.PatientService/UpdatePatient:old', gen_random_uuid(), '\\x00', '\\x01', now() - interval '3 days')`,
    );
    const patients = await connectAs('clinical_patient_svc');
    try {
      const { rows } = await patients.query("SELECT purge_expired_idempotent_requests(interval '24 hours')::int AS removed");
      expect(rows[0].removed).toBeGreaterThanOrEqual(1);
      expect((await admin.query("SELECT count(*)::int AS n FROM idempotent_requests WHERE scope LIKE '%:old'")).rows[0].n).toBe(0);
    } finally {
      await patients.end();
    }
  });
});

describe('analytics-svc grants', () => {
  it('reads what its view aggregates and nothing more of a patient or a reading', async () => {
    const analytics = await connectAs('clinical_analytics_svc');
    try {
      await expect(analytics.query('SELECT site_id, protocol_id, enrollment_date, status FROM patients')).resolves.toBeDefined();
      await expect(analytics.query('SELECT demographics FROM patients')).rejects.toThrow(/permission denied/);
      await expect(analytics.query('SELECT medical_history FROM patients')).rejects.toThrow(/permission denied/);
      await expect(analytics.query('SELECT data_batch FROM vital_signs')).rejects.toThrow(/permission denied/);
      await analytics.query('REFRESH MATERIALIZED VIEW CONCURRENTLY patient_analytics');
    } finally {
      await analytics.end();
    }
  });
});
