/**
 * Helpers of this app's tests (imported by *.test.ts only): SQL as each
 * service's own role, the way the other services write, and status checks.
 */
import pg from 'pg';
import type { TestService } from '@clinical/server-kit/testing';

export const SERVICE_ROLES = ['clinical_patient_svc', 'clinical_vitals_svc', 'clinical_audit_svc', 'clinical_analytics_svc'] as const;

export async function connectAs(service: TestService, role?: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: role ? service.database.urlAs(role) : service.database.url });
  await client.connect();
  return client;
}

/** Runs `statements` in one transaction carrying an audit context, as withAuditContext does. */
export async function inAuditedTransaction(
  client: pg.Client,
  context: { userId: string; requestId?: string; traceId?: string; reason?: string },
  work: () => Promise<void>,
): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(
      `SELECT set_config('app.user_id', $1, true), set_config('app.request_id', $2, true),
              set_config('app.trace_id', $3, true), set_config('app.reason', $4, true)`,
      [context.userId, context.requestId ?? '', context.traceId ?? '', context.reason ?? ''],
    );
    await work();
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
}

export async function insertPatient(client: pg.Client, site = 'SITE-A'): Promise<string> {
  const {
    rows: [row],
  } = await client.query<{ patient_id: string }>(
    `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, treatment_arm)
     VALUES ('T-' || substr(md5(random()::text), 1, 12), $1, 'RA001', '2024-01-15', 'A') RETURNING patient_id`,
    [site],
  );
  if (!row) {
    throw new Error('INSERT ... RETURNING returned no row');
  }
  return row.patient_id;
}

export { expectStatus } from '@clinical/server-kit/testing';
