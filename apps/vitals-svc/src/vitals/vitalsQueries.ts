import { rowSchema, sql, type AuditContext, type CommonQueryMethods } from '@clinical/db';
import { z } from 'zod';
import { z as z4 } from 'zod/v4';
import { ACTIVE_STATUSES, type PatientAccessRow } from './patientAccess.js';
import type { NormalizedReading } from './validateReading.js';
import { vitalFields, vitalRow, type VitalRow } from './vitalRecord.js';

const SELECTED_COLUMNS = sql.fragment`
  vital_id, patient_id, visit_date::text AS visit_date, measurement_time, systolic_bp, diastolic_bp,
  heart_rate, temperature, data_batch, recorded_at
`;

/** Rows of a page carry the exact cursor of each row (microseconds, UTC), which a JS Date would round. */
const pageFields = vitalFields.extend({ cursor_time: z4.string() });
const pageRow = rowSchema(pageFields);
export type PageRow = z4.infer<typeof pageFields>;

const accessRow = z.object({ patient_id: z.string(), site_id: z.string(), status: z.string() });

/** A time range [start, end); either end may be open. */
export interface TimeRange {
  readonly start?: Date;
  readonly end?: Date;
}

function siteCondition(sites: readonly string[] | null) {
  return sites === null ? sql.fragment`TRUE` : sql.fragment`site_id = ANY(${sql.array(sites, 'text')})`;
}

function rangeConditions(range: TimeRange) {
  return [
    ...(range.start ? [sql.fragment`measurement_time >= ${range.start.toISOString()}::timestamptz`] : []),
    ...(range.end ? [sql.fragment`measurement_time < ${range.end.toISOString()}::timestamptz`] : []),
  ];
}

/**
 * A condition true when the patient exists at one of `sites`: evaluated once per
 * statement (an uncorrelated InitPlan), it lets a read check access and fetch rows in one
 * round trip. An empty result then means "no rows" or "no access": ask `patientIsVisible`.
 */
function visibleTo(patientId: string, sites: readonly string[] | null) {
  return sql.fragment`EXISTS (SELECT 1 FROM patients WHERE patient_id = ${patientId} AND ${siteCondition(sites)})`;
}

/** Whether the patient exists at one of `sites` (null: any site). */
export async function patientIsVisible(db: CommonQueryMethods, patientId: string, sites: readonly string[] | null): Promise<boolean> {
  return db.exists(sql.unsafe`SELECT 1 FROM patients WHERE patient_id = ${patientId} AND ${siteCondition(sites)}`);
}

/** What the service may know of one patient, or null. */
export async function selectPatientAccess(db: CommonQueryMethods, patientId: string): Promise<PatientAccessRow | null> {
  return db.maybeOne(sql.type(accessRow)`SELECT patient_id::text AS patient_id, site_id, status FROM patients WHERE patient_id = ${patientId}`);
}

/**
 * Inserts one reading if its patient is active and at one of `sites`, in one
 * statement; null when it is not (the caller then finds out why). With
 * `audit`, the statement first sets the audit context itself (set_config(...,
 * true) in a CTE the INSERT reads), so that it can run on its own, as one
 * implicit transaction: one round trip instead of four. Without it, the
 * caller's transaction must have set the context.
 */
export async function insertReading(
  db: CommonQueryMethods,
  vitalId: string,
  reading: NormalizedReading,
  sites: readonly string[] | null,
  audit?: AuditContext,
): Promise<VitalRow | null> {
  const auditContext = audit
    ? sql.fragment`, (SELECT set_config('app.user_id', ${audit.userId}, true), set_config('app.request_id', ${audit.requestId ?? ''}, true),
                          set_config('app.trace_id', ${audit.traceId ?? ''}, true), set_config('app.reason', ${audit.reason ?? ''}, true),
                          set_config('app.client_ip', ${audit.clientIp ?? ''}, true) OFFSET 0) AS audit_context`
    : sql.fragment``;
  return db.maybeOne(sql.type(vitalRow)`
    INSERT INTO vital_signs (vital_id, patient_id, visit_date, measurement_time, systolic_bp, diastolic_bp,
                             heart_rate, temperature, data_batch)
    SELECT ${vitalId}, patient_id, ${reading.visitDate}::date, ${reading.measurementIso}::timestamptz,
           ${reading.systolicBp}::int4, ${reading.diastolicBp}::int4, ${reading.heartRate}::int4,
           ${reading.temperature === null ? null : reading.temperature.toFixed(1)}::numeric, ${reading.deviceDataJson}::jsonb
      FROM patients ${auditContext}
     WHERE patient_id = ${reading.patientId} AND status = ANY(${sql.array([...ACTIVE_STATUSES], 'text')}) AND ${siteCondition(sites)}
    RETURNING ${SELECTED_COLUMNS}
  `);
}

/** Where a page ends: the last reading returned, by its exact measurement_time (UTC, microseconds, as text) and id. */
export interface PageCursor {
  readonly measurementTime: string;
  readonly vitalId: string;
}

/**
 * One keyset page of a patient's readings in `range`, newest first (ties by
 * vital_id, descending), after `cursor`. Walks vital_signs_patient_time_idx:
 * the cursor's time bounds the index scan, the id breaks ties. Fetches one
 * row more than `limit` to tell whether another page follows.
 */
export async function selectVitalsPage(
  db: CommonQueryMethods,
  patientId: string,
  sites: readonly string[] | null,
  range: TimeRange,
  cursor: PageCursor | undefined,
  limit: number,
): Promise<readonly PageRow[]> {
  const conditions = [
    sql.fragment`patient_id = ${patientId}`,
    visibleTo(patientId, sites),
    ...rangeConditions(range),
    ...(cursor
      ? [
          sql.fragment`measurement_time <= (${cursor.measurementTime}::timestamp AT TIME ZONE 'UTC')`,
          sql.fragment`(measurement_time < (${cursor.measurementTime}::timestamp AT TIME ZONE 'UTC') OR vital_id < ${cursor.vitalId}::uuid)`,
        ]
      : []),
  ];
  return db.any(sql.type(pageRow)`
    SELECT ${SELECTED_COLUMNS},
           to_char(measurement_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS cursor_time
      FROM vital_signs
     WHERE ${sql.join(conditions, sql.fragment` AND `)}
     ORDER BY measurement_time DESC, vital_id DESC
     LIMIT ${limit + 1}
  `);
}

/** A patient's latest reading (greatest measurement_time, then greatest vital_id) if visible at `sites`, or null. */
export async function selectLatestVitals(db: CommonQueryMethods, patientId: string, sites: readonly string[] | null): Promise<VitalRow | null> {
  return db.maybeOne(sql.type(vitalRow)`
    SELECT ${SELECTED_COLUMNS}
      FROM vital_signs
     WHERE patient_id = ${patientId} AND ${visibleTo(patientId, sites)}
     ORDER BY measurement_time DESC, vital_id DESC
     LIMIT 1
  `);
}

const nullableNumber = z.number().nullable();
const summaryRow = z.object({
  visible: z.boolean(),
  reading_count: z.string(),
  systolic_count: z.string(),
  systolic_min: nullableNumber,
  systolic_max: nullableNumber,
  systolic_mean: nullableNumber,
  diastolic_count: z.string(),
  diastolic_min: nullableNumber,
  diastolic_max: nullableNumber,
  diastolic_mean: nullableNumber,
  heart_rate_count: z.string(),
  heart_rate_min: nullableNumber,
  heart_rate_max: nullableNumber,
  heart_rate_mean: nullableNumber,
  temperature_count: z.string(),
  temperature_min: nullableNumber,
  temperature_max: nullableNumber,
  temperature_mean: nullableNumber,
  first_measurement_time: z.date().nullable(),
  last_measurement_time: z.date().nullable(),
});
export type SummaryRow = z.infer<typeof summaryRow>;

/**
 * Count, min, max and mean of each measure over a patient's readings in `range`, computed by
 * PostgreSQL, with whether the patient is visible at `sites` (nothing is aggregated when not).
 */
export async function summarizeVitals(
  db: CommonQueryMethods,
  patientId: string,
  sites: readonly string[] | null,
  range: TimeRange,
): Promise<SummaryRow> {
  const aggregates = (column: string, name: string) => {
    const identifier = sql.identifier([column]);
    return sql.fragment`count(${identifier})::int8 AS ${sql.identifier([`${name}_count`])},
                        min(${identifier})::float8 AS ${sql.identifier([`${name}_min`])},
                        max(${identifier})::float8 AS ${sql.identifier([`${name}_max`])},
                        avg(${identifier})::float8 AS ${sql.identifier([`${name}_mean`])}`;
  };
  return db.one(sql.type(summaryRow)`
    SELECT ${visibleTo(patientId, sites)} AS visible,
           count(*)::int8 AS reading_count,
           ${aggregates('systolic_bp', 'systolic')},
           ${aggregates('diastolic_bp', 'diastolic')},
           ${aggregates('heart_rate', 'heart_rate')},
           ${aggregates('temperature', 'temperature')},
           min(measurement_time) AS first_measurement_time,
           max(measurement_time) AS last_measurement_time
      FROM vital_signs
     WHERE ${sql.join([sql.fragment`patient_id = ${patientId}`, visibleTo(patientId, sites), ...rangeConditions(range)], sql.fragment` AND `)}
  `);
}
