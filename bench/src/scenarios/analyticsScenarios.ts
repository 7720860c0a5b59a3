import { analyticsV1 } from '@clinical/contracts';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import type { BenchEnvironment } from '../benchEnvironment.js';
import { compareWithFloors, type FloorSide } from '../floorComparison.js';
import { runLoad, type LoadResult } from '../loadGenerator.js';
import { startServiceProcess, unaryCaller } from '../processes.js';
import type { ScenarioReport } from '../report.js';
import { measureAtEachLoad, type LoadShape, type RunSettings, type Scenario } from '../scenario.js';

/**
 * analytics-svc: what a refresh costs, and GetSiteAnalytics at rest and while
 * refreshes run back to back, at growing numbers of vital-sign rows (the data
 * grows in place from one size to the next).
 *
 *   npm run bench -- analytics-read                 10^4 and 10^6 rows
 *   npm run bench -- analytics-read-1e7             10^4, 10^6 and 10^7 (seeding 10^7 takes minutes)
 *   ANALYTICS_BENCH_SIZES=1e5,3e6 npm run bench -- analytics-read
 *
 * Refresh cost, per size (RefreshAnalytics' own duration, from its log): the
 * full recompute from the tables (what every refresh cost before it became
 * incremental; now only when asked for, or when a change names more than a
 * third of the patients), a refresh with nothing to fold, one after a small
 * change (100 readings of 10 patients, a status change, a corrected and a
 * deleted reading) and one after a large change (10% of the table, at most
 * 10^5 readings, over a tenth of the patients, a tenth of those changing
 * status). Incremental means the last two follow the change, not the table.
 *
 * Reads, per size and load: GetSiteAnalytics at rest, from load processes
 * of their own (CPU per call of each side read from /proc), against two
 * floors: the bare grpc-js echo of the same response bytes (the honest floor
 * of a read the cache answers, as the service answers it at rest) and the
 * database-read floor (the SELECT the service runs on a cache miss, for the
 * pair each request asks, through raw pg as its role, the response encoded).
 * And, in-process as before, during back-to-back refreshes against
 * at rest (same load, same run), in the order at rest, during, during, at
 * rest so that the machine's other work drifts alike over both (the ratio
 * to read is p99DuringOverAtRest, over both pairs). Readings are ingested
 * all along, at rest too (the small change every 100 ms, 1,000 readings a
 * second; ANALYTICS_BENCH_INGEST_INTERVAL_MS sets the interval, 0 stops it),
 * so that the refreshes fold real changes and the ratio is theirs alone.
 * The loads: the CLI's concurrency in a closed loop (a throughput figure: at
 * 32 in flight on 2 cores, latency is mostly queueing), then an open loop at
 * `--load` of that throughput, the load the p99 target (during / at rest <=
 * 1.5) is read at; every size's open loop runs at the first size's rate.
 * Calls shed (UNAVAILABLE) are counted apart.
 */

const SITES = Array.from({ length: 20 }, (_, index) => `SITE-${String(index + 1).padStart(2, '0')}`);
const PROTOCOLS = ['RA001', 'RA002', 'ONC-7', 'CARD-3', 'NEURO-1'];
const VITALS_PER_PATIENT = 50;
const SEED_CHUNK_ROWS = 1_000_000;

const sizeLabel = (rows: number) => `1e${Math.round(Math.log10(rows))}`;

function sizesFromEnvironment(fallback: readonly number[]): number[] {
  const given = process.env.ANALYTICS_BENCH_SIZES;
  const sizes = given ? given.split(',').map((size) => Math.round(Number(size))) : [...fallback];
  if (sizes.some((size) => !Number.isFinite(size) || size < 1_000)) {
    throw new Error('ANALYTICS_BENCH_SIZES: comma-separated row counts of at least 1000, e.g. 1e4,1e6');
  }
  return sizes.sort((a, b) => a - b);
}

/**
 * Grows the trial to `vitals` readings with set-based SQL: patients spread
 * over sites, protocols and statuses, about one measure in ten NULL. Seeding
 * is not what is measured, so it skips the triggers (the audit trail's and
 * the foreign key's) by running as a replication session, then vacuums and
 * analyzes so that reads and refreshes see a settled table. Without the audit
 * triggers nothing was queued for the analytics: it asks for a rebuild, as an
 * operator would after such a load.
 */
async function growTrial(admin: pg.Client, vitals: number): Promise<{ patients: number; seconds: number }> {
  const started = performance.now();
  const patientsWanted = Math.max(200, Math.ceil(vitals / VITALS_PER_PATIENT));
  await admin.query("SET session_replication_role = 'replica'");
  const { rows: have } = await admin.query<{ patients: number; vitals: number }>(
    'SELECT (SELECT count(*) FROM patients)::int AS patients, (SELECT count(*) FROM vital_signs)::int AS vitals',
  );
  await admin.query(
    `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, status)
     SELECT 'BENCH-' || g, ($2::text[])[1 + g % array_length($2::text[], 1)],
            ($3::text[])[1 + (g / 7) % array_length($3::text[], 1)], date '2023-01-01' + (g % 700),
            (ARRAY['SCREENING','SCREEN_FAILED','ENROLLED','ENROLLED','ENROLLED','COMPLETED','WITHDRAWN'])[1 + g % 7]
       FROM generate_series($1::int + 1, $4::int) AS g`,
    [have[0]!.patients, SITES, PROTOCOLS, patientsWanted],
  );
  await admin.query(`CREATE TEMP TABLE IF NOT EXISTS bench_patient_ids AS SELECT 0 AS n, NULL::uuid AS patient_id WITH NO DATA`);
  await admin.query('TRUNCATE bench_patient_ids');
  await admin.query(
    'INSERT INTO bench_patient_ids SELECT row_number() OVER (ORDER BY patient_id) - 1, patient_id FROM patients',
  );
  await admin.query('CREATE INDEX IF NOT EXISTS bench_patient_ids_n ON bench_patient_ids (n)');
  await admin.query('ANALYZE bench_patient_ids');
  for (let from = have[0]!.vitals; from < vitals; from += SEED_CHUNK_ROWS) {
    const to = Math.min(vitals, from + SEED_CHUNK_ROWS);
    await admin.query(
      `INSERT INTO vital_signs (patient_id, visit_date, measurement_time, systolic_bp, diastolic_bp, heart_rate, temperature)
       SELECT ids.patient_id, date '2024-01-01' + (g % 500)::int, timestamptz '2024-01-01' + make_interval(secs => g),
              CASE WHEN g % 10 = 1 THEN NULL ELSE 95 + (g * 7) % 80 END,
              CASE WHEN g % 10 = 2 THEN NULL ELSE 55 + (g * 11) % 50 END,
              CASE WHEN g % 10 = 3 THEN NULL ELSE 50 + (g * 13) % 70 END,
              CASE WHEN g % 10 = 4 THEN NULL ELSE 35.5 + ((g * 17) % 40) / 10.0 END
         FROM generate_series($1::bigint, $2::bigint - 1) AS g
         JOIN bench_patient_ids AS ids ON ids.n = (g % $3::int)::int`,
      [from, to, patientsWanted],
    );
  }
  await admin.query('RESET session_replication_role');
  await admin.query('VACUUM ANALYZE patients');
  await admin.query('VACUUM ANALYZE vital_signs');
  await admin.query("INSERT INTO analytics_pending_changes (change) VALUES ('REBUILD')");
  return { patients: patientsWanted, seconds: (performance.now() - started) / 1_000 };
}

/** One change to the trial, written as plain SQL would (triggers and audit on). */
interface TrialChange {
  /** New readings, spread evenly over `patients` patients. */
  readonly readings: number;
  readonly patients: number;
  /** Patients whose status flips (ENROLLED <-> COMPLETED). */
  readonly statusChanges: number;
  /** Readings corrected (a measure changed) and readings deleted. */
  readonly corrections: number;
}

/**
 * Writes `change` from the `turn`-th patient on (turns move the change over
 * the trial), in one transaction. Readings are measured from `now()` on, a
 * second apart, as a device uploads them.
 */
async function writeChange(admin: pg.Client, patients: number, change: TrialChange, turn: number): Promise<void> {
  const first = (turn * change.patients) % patients;
  await admin.query('BEGIN');
  try {
    await admin.query(
      `INSERT INTO vital_signs (patient_id, visit_date, measurement_time, systolic_bp, diastolic_bp, heart_rate, temperature)
       SELECT ids.patient_id, current_date, now() + make_interval(secs => g), 95 + (g * 7) % 80, 55 + (g * 11) % 50,
              50 + (g * 13) % 70, 35.5 + ((g * 17) % 40) / 10.0
         FROM generate_series(0, $1::int - 1) AS g
         JOIN bench_patient_ids AS ids ON ids.n = ($2::int + g % $3::int) % $4::int`,
      [change.readings, first, change.patients, patients],
    );
    if (change.statusChanges > 0) {
      await admin.query(
        `UPDATE patients SET status = CASE status WHEN 'ENROLLED' THEN 'COMPLETED' ELSE 'ENROLLED' END
          WHERE patient_id IN (SELECT patient_id FROM bench_patient_ids WHERE n >= $1 ORDER BY n LIMIT $2)`,
        [first, change.statusChanges],
      );
    }
    if (change.corrections > 0) {
      await admin.query(
        `WITH latest AS (
           SELECT (SELECT v.vital_id FROM vital_signs AS v WHERE v.patient_id = ids.patient_id
                    ORDER BY v.measurement_time DESC LIMIT 1) AS vital_id
             FROM bench_patient_ids AS ids WHERE ids.n >= $1 ORDER BY ids.n LIMIT $2
         )
         UPDATE vital_signs SET systolic_bp = 120 WHERE vital_id IN (SELECT vital_id FROM latest)`,
        [first, change.corrections],
      );
      await admin.query(
        `DELETE FROM vital_signs WHERE vital_id IN (
           SELECT (SELECT v.vital_id FROM vital_signs AS v WHERE v.patient_id = ids.patient_id
                    ORDER BY v.measurement_time DESC LIMIT 1)
             FROM bench_patient_ids AS ids WHERE ids.n >= $1 ORDER BY ids.n LIMIT $2)`,
        [(first + change.corrections) % patients, change.corrections],
      );
    }
    await admin.query('COMMIT');
  } catch (error) {
    await admin.query('ROLLBACK');
    throw error;
  }
}

const SMALL_CHANGE: TrialChange = { readings: 100, patients: 10, statusChanges: 1, corrections: 1 };

/**
 * 10% of the table (at most 10^5 readings) over a tenth of the patients, a
 * tenth of those changing status. (A change naming more than a third of the
 * patients is recomputed from the tables instead: that costs less.)
 */
function largeChange(vitals: number, patients: number): TrialChange {
  const touched = Math.ceil(patients / 10);
  return {
    readings: Math.min(100_000, Math.round(vitals / 10)),
    patients: touched,
    statusChanges: Math.ceil(touched / 10),
    corrections: 0,
  };
}

/**
 * Ingestion while reads are measured, alike at rest and during refreshes, so
 * that the refreshes have something to fold and the ratio is the refreshes'
 * alone: the small change every ANALYTICS_BENCH_INGEST_INTERVAL_MS (default
 * 100 ms: 1,000 readings a second over 100 patients; 0: no ingestion, the
 * refreshes fold nothing).
 */
function ingestIntervalFromEnvironment(): number {
  const given = Number(process.env.ANALYTICS_BENCH_INGEST_INTERVAL_MS ?? 100);
  if (!Number.isInteger(given) || given < 0) {
    throw new Error('ANALYTICS_BENCH_INGEST_INTERVAL_MS: a whole number of milliseconds, 0 for no ingestion');
  }
  return given;
}

/** Writes the small change every `intervalMs` (or as fast as they complete) until stopped. */
function ingestLoop(write: () => Promise<void>, intervalMs: number) {
  let stopped = intervalMs === 0;
  let changes = 0;
  const done = (async () => {
    while (!stopped) {
      const next = performance.now() + intervalMs;
      await write();
      changes += 1;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - performance.now())));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await done;
      return changes;
    },
  };
}

const millis = (duration: { seconds: string; nanos: number } | undefined) =>
  duration ? Number(duration.seconds) * 1_000 + duration.nanos / 1e6 : Number.NaN;
const round = (value: number, digits = 2) => Number(value.toFixed(digits));
const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor((sorted.length - 1) / 2)]!;
};

/** Runs RefreshAnalytics back to back until stopped; reports how many ran and how long each took. */
function refreshLoop(refresh: () => Promise<analyticsV1.RefreshAnalyticsResponse>) {
  let stopped = false;
  const durationsMs: number[] = [];
  const errors: string[] = [];
  let busyMs = 0;
  const done = (async () => {
    while (!stopped) {
      const started = performance.now();
      try {
        const response = await refresh();
        durationsMs.push(millis(response.duration));
      } catch (error) {
        errors.push((error as Error).message);
      }
      busyMs += performance.now() - started;
    }
  })();
  return {
    async stop() {
      stopped = true;
      await done;
      return { durationsMs, errors, busyMs };
    },
  };
}

const GET_SITE_ANALYTICS_PATH = '/clinical.analytics.v1.AnalyticsService/GetSiteAnalytics';

/**
 * What GetSiteAnalytics runs on a cache miss, as analytics-svc sends it
 * (apps/analytics-svc/src/siteAnalytics/siteAnalyticsQueries.ts selectViewRows
 * for one site and protocol, limit 1; keep the two alike): the pair's
 * figures and the latest successful refresh in one statement.
 */
const SELECT_SITE_FIGURES = `
    WITH latest AS (
      SELECT refresh_id, started_at, ((started_at AT TIME ZONE 'UTC')::date - date '1970-01-01')::bigint AS as_of_day
        FROM analytics_refreshes
       WHERE status = 'SUCCEEDED' ORDER BY refresh_id DESC LIMIT 1
    ), page AS (
      SELECT f.site_id, f.protocol_id, f.patient_count::text,
             round((latest.as_of_day * f.patient_count - f.enrollment_day_sum)::numeric / f.patient_count, 2)::float8 AS avg_days_enrolled,
             f.vitals_count::text AS total_vitals,
             f.screening_count::text, f.screen_failed_count::text, f.enrolled_count::text, f.completed_count::text,
             f.withdrawn_count::text,
             round(f.systolic_sum::numeric / nullif(f.systolic_n, 0), 2)::float8 AS avg_systolic_bp,
             round(f.diastolic_sum::numeric / nullif(f.diastolic_n, 0), 2)::float8 AS avg_diastolic_bp,
             round(f.heart_rate_sum::numeric / nullif(f.heart_rate_n, 0), 2)::float8 AS avg_heart_rate,
             round(f.temperature_sum / nullif(f.temperature_n, 0), 2)::float8 AS avg_temperature
        FROM analytics_site_figures AS f CROSS JOIN latest
        WHERE site_id = $1 AND protocol_id = $2
       ORDER BY site_id, protocol_id
       LIMIT $3
    )
    SELECT latest.refresh_id, latest.started_at AS as_of,
           coalesce((SELECT json_agg(page ORDER BY site_id, protocol_id) FROM page), '[]'::json) AS rows
      FROM latest
     -- Not in the service's statement: without it a pair that is not there would still return a row, and the
     -- floor's check that every call found its figures (expectRows) could not fail.
     WHERE EXISTS (SELECT 1 FROM page)`;

async function analyticsRead(environment: BenchEnvironment, settings: RunSettings, sizes: readonly number[]): Promise<ScenarioReport[]> {
  const admin = new pg.Client({ connectionString: environment.database.url });
  await admin.connect();
  // The benchmark drives the refreshes; a scheduled one would land in the middle of "at rest".
  const service = await startServiceProcess('analytics-svc', { ...environment.serviceEnv, ANALYTICS_REFRESH_SCHEDULER: 'off' });
  const readerToken = await environment.token({ roles: ['monitor'], sites: SITES });
  const adminToken = await environment.token({ roles: ['admin'], sites: '*' });
  const reader = unaryCaller(
    service.address,
    GET_SITE_ANALYTICS_PATH,
    (request: analyticsV1.GetSiteAnalyticsRequest) => analyticsV1.GetSiteAnalyticsRequest.encode(request).finish(),
    (bytes) => analyticsV1.GetSiteAnalyticsResponse.decode(bytes),
    readerToken,
  );
  const refresher = unaryCaller(
    service.address,
    '/clinical.analytics.v1.AnalyticsService/RefreshAnalytics',
    (request: analyticsV1.RefreshAnalyticsRequest) => analyticsV1.RefreshAnalyticsRequest.encode(request).finish(),
    (bytes) => analyticsV1.RefreshAnalyticsResponse.decode(bytes),
    adminToken,
  );
  const pairs = SITES.flatMap((siteId) => PROTOCOLS.map((protocolId) => ({ siteId, protocolId })));
  const refresh = async () => millis((await refresher.call({ requestId: '' })).duration);
  const ingestIntervalMs = ingestIntervalFromEnvironment();
  const reports: ScenarioReport[] = [];
  let openLoopRate: number | undefined;
  let turn = 0;
  try {
    for (const size of sizes) {
      const label = sizeLabel(size);
      process.stdout.write(`  ${label}: seeding ${size} vital-sign rows...\n`);
      const seeded = await growTrial(admin, size);
      const cost = await measureRefreshCost(admin, refresh, size, seeded.patients, () => (turn += 1));
      process.stdout.write(
        `  ${label}: refresh ${cost.rebuildMs} ms to recompute everything, ${cost.idleMs} ms with nothing to fold, ` +
          `${cost.smallChangeMs} ms after ${cost.smallChangeReadings} readings, ${cost.largeChangeMs} ms after ${cost.largeChangeReadings}\n`,
      );
      const sample = await reader.call(pairs[0]!);
      const response = Buffer.from(analyticsV1.GetSiteAnalyticsResponse.encode(sample).finish()).toString('base64');
      const floors: FloorSide[] = [
        // What a read served from the cache cannot avoid: the same bytes answered by bare grpc-js.
        { baselineName: 'bare grpc-js echo', floor: { path: GET_SITE_ANALYTICS_PATH, response } },
        // What a cache miss cannot avoid: the service's SELECT for the pair asked (taken from each request), encoded.
        {
          baselineName: 'database-read floor (the cache-miss SELECT)',
          label: 'vs read floor',
          floor: {
            path: GET_SITE_ANALYTICS_PATH,
            response,
            responseType: 'analyticsV1.GetSiteAnalyticsResponse',
            requestType: 'analyticsV1.GetSiteAnalyticsRequest',
            databaseUrl: environment.database.urlAs('clinical_analytics_svc'),
            statements: [{ text: SELECT_SITE_FIGURES, expectRows: true, values: [{ request: 'siteId' }, { request: 'protocolId' }, 1] }],
          },
        },
      ];
      const pairRequests = pairs.map((pair) => analyticsV1.GetSiteAnalyticsRequest.encode(pair).finish());
      // Every size's open loop runs at the first size's rate, so that sizes compare at one load.
      const atEachLoad = await measureAtEachLoad(settings, { ratePerSecond: openLoopRate }, async (at): Promise<ScenarioReport[]> => {
        const readPair = (index: number) => reader.call(pairs[index % pairs.length]!);
        const duringRefreshes = async () => {
          const loop = refreshLoop(() => refresher.call({ requestId: '' }));
          const started = performance.now();
          const reads = await measureReads(at, readPair);
          const windowMs = performance.now() - started;
          return { reads, windowMs, refreshes: await loop.stop() };
        };
        // At rest, during, during, at rest: whatever else the machine does drifts alike over both.
        const windows = async () => {
          const atRest = await measureReads(at, readPair);
          const during = await duringRefreshes();
          const duringAgain = await duringRefreshes();
          return { atRest, during, duringAgain, atRestAgain: await measureReads(at, readPair) };
        };
        const ingestionStarted = performance.now();
        const ingestion = ingestLoop(() => writeChange(admin, seeded.patients, SMALL_CHANGE, (turn += 1)), ingestIntervalMs);
        // At rest (ingestion on, no refresh), from load processes: the service against each floor, with CPU per call.
        const againstFloors = async () => {
          const compared = await compareWithFloors({
            scenario: `analytics-read ${label}`,
            service,
            floors,
            authorization: `Bearer ${readerToken}`,
            serviceRequests: pairRequests,
            shape: at,
          });
          return { compared, ...(await windows()) };
        };
        const measured = await againstFloors().finally(() => ingestion.stop());
        const { compared, atRest, during, duringAgain, atRestAgain } = measured;
        // Stopped already: stop() again just gives the count.
        const ingestedPerSecond = ((await ingestion.stop()) * SMALL_CHANGE.readings) / ((performance.now() - ingestionStarted) / 1_000);
        const refreshMs = [...during.refreshes.durationsMs, ...duringAgain.refreshes.durationsMs];
        const refreshErrors = [...during.refreshes.errors, ...duringAgain.refreshes.errors];
        const sizeExtra = { vitalRows: size, patients: seeded.patients, viewRows: pairs.length, seedSeconds: round(seeded.seconds, 1), ...cost };
        return [
          ...compared.map((report) => ({ ...report, extra: sizeExtra })),
          {
            scenario: `analytics-read-during-refresh ${label} ${at.label}`,
            baselineName: 'at rest',
            baseline: atRest,
            measured: during.reads,
            concurrency: at.concurrency,
            servicePeakRssMiB: service.peakRssMiB(),
            extra: {
              // The figure to read: both windows during refreshes against both at rest (the table shows the first pair).
              p99DuringOverAtRest: round((during.reads.p99Ms + duringAgain.reads.p99Ms) / (atRest.p99Ms + atRestAgain.p99Ms)),
              p99FirstPair: round(during.reads.p99Ms / atRest.p99Ms),
              p99SecondPair: round(duringAgain.reads.p99Ms / atRestAgain.p99Ms),
              shedAtRest: atRest.shed + atRestAgain.shed,
              shedDuring: during.reads.shed + duringAgain.reads.shed,
              readingsIngestedPerSecond: Math.round(ingestedPerSecond),
              refreshes: refreshMs.length,
              refreshMsMedian: round(median(refreshMs), 1),
              refreshMsMax: round(Math.max(...refreshMs), 1),
              refreshBusyShare: round(Math.min(1, (during.refreshes.busyMs + duringAgain.refreshes.busyMs) / (during.windowMs + duringAgain.windowMs))),
              refreshErrors: refreshErrors.length,
              ...(refreshErrors[0] ? { firstRefreshError: refreshErrors[0] } : {}),
            },
          },
        ];
      });
      openLoopRate ??= atEachLoad.at(-1)!.ratePerSecond;
      reports.push(...atEachLoad);
    }
    return reports;
  } finally {
    reader.close();
    refresher.close();
    await service.stop();
    await admin.end();
  }
}

/**
 * RefreshAnalytics' durations (from its log) after changes of growing size:
 * the rebuild growTrial queued (everything recomputed from the tables), then
 * nothing to fold, then a small change, then a large one, each the median of
 * a few runs. `nextTurn` moves each change to other patients.
 */
async function measureRefreshCost(
  admin: pg.Client,
  refresh: () => Promise<number>,
  vitals: number,
  patients: number,
  nextTurn: () => number,
): Promise<Record<string, number>> {
  const rebuildMs = await refresh();
  const after = async (runs: number, change?: TrialChange) => {
    const durations: number[] = [];
    for (let run = 0; run < runs; run += 1) {
      if (change) {
        await writeChange(admin, patients, change, nextTurn());
      }
      durations.push(await refresh());
    }
    return round(median(durations), 1);
  };
  const idleMs = await after(3);
  const smallChangeMs = await after(5, SMALL_CHANGE);
  const large = largeChange(vitals, patients);
  const largeChangeMs = await after(vitals >= 5_000_000 ? 1 : 3, large);
  return {
    rebuildMs: round(rebuildMs, 1),
    idleMs,
    smallChangeReadings: SMALL_CHANGE.readings,
    smallChangePatients: SMALL_CHANGE.patients,
    smallChangeMs,
    largeChangeReadings: large.readings,
    largeChangePatients: large.patients,
    largeChangeMs,
    largeOverSmallChange: round(large.readings / SMALL_CHANGE.readings, 0),
    largeOverSmallMs: round(largeChangeMs / smallChangeMs, 1),
    rebuildOverSmallMs: round(rebuildMs / smallChangeMs, 1),
  };
}

/**
 * GetSiteAnalytics at `at`, warm-up first, counting apart the calls refused
 * as overloaded (UNAVAILABLE: shed by the in-flight budget) while measuring.
 */
async function measureReads(at: LoadShape, call: (index: number) => Promise<unknown>): Promise<LoadResult & { shed: number }> {
  let shed = 0;
  const counted = async (index: number) => {
    try {
      await call(index);
    } catch (error) {
      if ((error as { code?: number }).code === grpc.status.UNAVAILABLE) {
        shed += 1;
      }
      throw error;
    }
  };
  if (at.warmupMs > 0) {
    await runLoad({ ...at, durationMs: at.warmupMs, warmupMs: 0, call: counted });
  }
  shed = 0;
  const result = await runLoad({ ...at, warmupMs: 0, call: counted });
  return { ...result, shed };
}

/** The analytics-svc benchmarks, by name. */
export const analyticsScenarios: Record<string, Scenario> = {
  'analytics-read': (environment, settings) => analyticsRead(environment, settings, sizesFromEnvironment([1e4, 1e6])),
  'analytics-read-1e7': (environment, settings) => analyticsRead(environment, settings, [1e4, 1e6, 1e7]),
};
