import { seededRandom } from '@clinical/testing';
import type pg from 'pg';

export const STATUSES = ['SCREENING', 'SCREEN_FAILED', 'ENROLLED', 'COMPLETED', 'WITHDRAWN'] as const;

export interface TrialShape {
  readonly seed: number;
  readonly patients: number;
  readonly sites: readonly string[];
  readonly protocols: readonly string[];
  /** Readings per patient are uniform in 0..max (0 leaves some patients without any). */
  readonly maxVitalsPerPatient: number;
  /** Chance that one measure of a reading is NULL. */
  readonly nullChance?: number;
}

/**
 * Inserts a random trial straight in SQL, as the old system's plain SQL
 * would: patients spread over sites, protocols and statuses, enrollment dates
 * over five years (a few in the future), and readings whose measures are
 * each sometimes NULL (all four, sometimes).
 * @returns the ids of the patients inserted.
 */
export async function insertRandomTrial(admin: pg.Client, shape: TrialShape): Promise<string[]> {
  const random = seededRandom(shape.seed);
  const pick = <T>(values: readonly T[]): T => values[Math.floor(random() * values.length)]!;
  const between = (low: number, high: number) => low + Math.floor(random() * (high - low + 1));
  const maybe = <T>(value: T): T | null => (random() < (shape.nullChance ?? 0.2) ? null : value);
  const today = Date.now();

  const patients = Array.from({ length: shape.patients }, (_, index) => ({
    subject: `R${shape.seed}-${index}-${Math.floor(random() * 1e9)}`,
    site: pick(shape.sites),
    protocol: pick(shape.protocols),
    enrolled: new Date(today - between(-20, 5 * 365) * 86_400_000).toISOString().slice(0, 10),
    status: pick(STATUSES),
  }));
  const { rows } = await admin.query<{ patient_id: string }>(
    `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, status)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::text[])
     RETURNING patient_id`,
    [
      patients.map((patient) => patient.subject),
      patients.map((patient) => patient.site),
      patients.map((patient) => patient.protocol),
      patients.map((patient) => patient.enrolled),
      patients.map((patient) => patient.status),
    ],
  );
  const ids = rows.map((row) => row.patient_id);

  const vitals: { patient: string; systolic: number | null; diastolic: number | null; heart: number | null; temperature: string | null }[] = [];
  for (const id of ids) {
    const count = between(0, shape.maxVitalsPerPatient);
    for (let reading = 0; reading < count; reading += 1) {
      vitals.push({
        patient: id,
        systolic: maybe(between(85, 190)),
        diastolic: maybe(between(45, 120)),
        heart: maybe(between(38, 160)),
        temperature: maybe((between(350, 405) / 10).toFixed(1)),
      });
    }
  }
  await insertVitals(admin, vitals);
  return ids;
}

/** Inserts readings (one statement; measures may be NULL). */
export async function insertVitals(
  admin: pg.Client,
  vitals: readonly { patient: string; systolic: number | null; diastolic: number | null; heart: number | null; temperature: string | null }[],
): Promise<void> {
  if (vitals.length === 0) {
    return;
  }
  await admin.query(
    `INSERT INTO vital_signs (patient_id, visit_date, measurement_time, systolic_bp, diastolic_bp, heart_rate, temperature)
     SELECT v.patient_id, current_date, now() - (v.ordinal || ' minutes')::interval, v.systolic, v.diastolic, v.heart, v.temperature
       FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[], $5::numeric[]) WITH ORDINALITY
            AS v(patient_id, systolic, diastolic, heart, temperature, ordinal)`,
    [
      vitals.map((vital) => vital.patient),
      vitals.map((vital) => vital.systolic),
      vitals.map((vital) => vital.diastolic),
      vitals.map((vital) => vital.heart),
      vitals.map((vital) => vital.temperature),
    ],
  );
}

/** Per site and protocol, the figures computed straight from the tables, unrounded, as of `asOfDate` (UTC). */
export interface DirectFigures {
  readonly site_id: string;
  readonly protocol_id: string;
  readonly patient_count: number;
  readonly avg_days_enrolled: number;
  readonly total_vitals: number;
  readonly by_status: Record<string, number>;
  readonly avg_systolic_bp: number | null;
  readonly avg_diastolic_bp: number | null;
  readonly avg_heart_rate: number | null;
  readonly avg_temperature: number | null;
}

/**
 * The aggregates the service should serve, formulated independently of it:
 * patients and readings aggregated separately, averages with avg() over the
 * readings themselves.
 */
export async function directFigures(admin: pg.Client, asOfDate: string): Promise<DirectFigures[]> {
  const { rows } = await admin.query<{
    site_id: string;
    protocol_id: string;
    patient_count: number;
    avg_days_enrolled: number;
    total_vitals: number;
    by_status: Record<string, number>;
    avg_systolic_bp: number | null;
    avg_diastolic_bp: number | null;
    avg_heart_rate: number | null;
    avg_temperature: number | null;
  }>(
    `WITH people AS (
       SELECT site_id, protocol_id, count(*)::int AS patient_count,
              avg($1::date - enrollment_date)::float8 AS avg_days_enrolled
         FROM patients GROUP BY site_id, protocol_id
     ), statuses AS (
       SELECT site_id, protocol_id, jsonb_object_agg(status, n) AS by_status
         FROM (SELECT site_id, protocol_id, status, count(*)::int AS n FROM patients GROUP BY 1, 2, 3) AS s
        GROUP BY site_id, protocol_id
     ), readings AS (
       SELECT p.site_id, p.protocol_id, count(*)::int AS total_vitals,
              avg(v.systolic_bp)::float8 AS avg_systolic_bp, avg(v.diastolic_bp)::float8 AS avg_diastolic_bp,
              avg(v.heart_rate)::float8 AS avg_heart_rate, avg(v.temperature)::float8 AS avg_temperature
         FROM vital_signs AS v JOIN patients AS p USING (patient_id)
        GROUP BY p.site_id, p.protocol_id
     )
     SELECT people.site_id, people.protocol_id, people.patient_count, people.avg_days_enrolled,
            coalesce(readings.total_vitals, 0) AS total_vitals, statuses.by_status,
            readings.avg_systolic_bp, readings.avg_diastolic_bp, readings.avg_heart_rate, readings.avg_temperature
       FROM people
       JOIN statuses USING (site_id, protocol_id)
       LEFT JOIN readings USING (site_id, protocol_id)
      ORDER BY people.site_id, people.protocol_id`,
    [asOfDate],
  );
  return rows;
}
