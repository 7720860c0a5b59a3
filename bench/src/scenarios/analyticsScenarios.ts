import { analyticsV1 } from '@clinical/contracts';
import pg from 'pg';
import type { BenchEnvironment } from '../benchEnvironment.js';
import { measureGrpcBaseline } from '../baseline.js';
import { runLoad } from '../loadGenerator.js';
import { startServiceProcess, unaryCaller } from '../processes.js';
import type { ScenarioReport } from '../report.js';
import { measureAtEachLoad, type RunSettings, type Scenario } from '../scenario.js';

/**
 * analytics-svc: GetSiteAnalytics at rest, the refresh's duration, and
 * GetSiteAnalytics while refreshes run back to back, at growing numbers of
 * vital-sign rows (the data grows in place from one size to the next).
 *
 *   npm run bench -- analytics-read                 10^4 and 10^6 rows
 *   npm run bench -- analytics-read-1e7             10^4, 10^6 and 10^7 (seeding 10^7 takes minutes)
 *   ANALYTICS_BENCH_SIZES=1e5,3e6 npm run bench -- analytics-read
 *
 * Each size reports, at each load, two rows: the read against the bare
 * grpc-js baseline (same response bytes), and the read during refreshes
 * against the read at rest (same load, same run). The loads: the CLI's
 * concurrency in a closed loop (a throughput figure: at 32 in flight on 2
 * cores, latency is mostly queueing), then an open loop at `--load` of that
 * throughput, the load the p99 targets are read at; every size's open loop
 * runs at the first size's rate.
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
 * analyzes so that reads and refreshes see a settled table.
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
  return { patients: patientsWanted, seconds: (performance.now() - started) / 1_000 };
}

const millis = (duration: { seconds: string; nanos: number } | undefined) =>
  duration ? Number(duration.seconds) * 1_000 + duration.nanos / 1e6 : Number.NaN;
const round = (value: number, digits = 2) => Number(value.toFixed(digits));

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

async function analyticsRead(environment: BenchEnvironment, settings: RunSettings, sizes: readonly number[]): Promise<ScenarioReport[]> {
  const admin = new pg.Client({ connectionString: environment.database.url });
  await admin.connect();
  // The benchmark drives the refreshes; a scheduled one would land in the middle of "at rest".
  const service = await startServiceProcess('analytics-svc', { ...environment.serviceEnv, ANALYTICS_REFRESH_SCHEDULER: 'off' });
  const readerToken = await environment.token({ roles: ['monitor'], sites: SITES });
  const adminToken = await environment.token({ roles: ['admin'], sites: '*' });
  const reader = unaryCaller(
    service.address,
    '/clinical.analytics.v1.AnalyticsService/GetSiteAnalytics',
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
  const read = (index: number) => reader.call(pairs[index % pairs.length]!).then(() => undefined);
  const reports: ScenarioReport[] = [];
  let openLoopRate: number | undefined;
  try {
    for (const size of sizes) {
      const label = sizeLabel(size);
      process.stdout.write(`  ${label}: seeding ${size} vital-sign rows...\n`);
      const seeded = await growTrial(admin, size);
      const refreshMs: number[] = [];
      for (let run = 0; run < (size >= 5_000_000 ? 2 : 3); run += 1) {
        refreshMs.push(millis((await refresher.call({ requestId: '' })).duration));
      }
      const sample = await reader.call(pairs[0]!);
      // Every size's open loop runs at the first size's rate, so that sizes compare at one load.
      const atEachLoad = await measureAtEachLoad(settings, { ratePerSecond: openLoopRate }, async (at): Promise<ScenarioReport[]> => {
        const baseline = await measureGrpcBaseline(
          pairs[0]!,
          (request: analyticsV1.GetSiteAnalyticsRequest) => analyticsV1.GetSiteAnalyticsRequest.encode(request).finish(),
          (bytes) => analyticsV1.GetSiteAnalyticsResponse.decode(bytes),
          analyticsV1.GetSiteAnalyticsResponse.encode(sample).finish(),
          at,
        );
        const atRest = await runLoad({ ...at, call: read });
        const loop = refreshLoop(() => refresher.call({ requestId: '' }));
        const windowStarted = performance.now();
        const during = await runLoad({ ...at, call: read });
        const windowMs = performance.now() - windowStarted;
        const refreshes = await loop.stop();
        return [
          {
            scenario: `analytics-read ${label} ${at.label}`,
            baseline,
            measured: atRest,
            concurrency: at.concurrency,
            servicePeakRssMiB: service.peakRssMiB(),
            extra: {
              vitalRows: size,
              patients: seeded.patients,
              viewRows: pairs.length,
              seedSeconds: round(seeded.seconds, 1),
              refreshMsMin: round(Math.min(...refreshMs), 1),
              refreshMsMax: round(Math.max(...refreshMs), 1),
            },
          },
          {
            scenario: `analytics-read-during-refresh ${label} ${at.label}`,
            baselineName: 'at rest',
            baseline: atRest,
            measured: during,
            concurrency: at.concurrency,
            servicePeakRssMiB: service.peakRssMiB(),
            extra: {
              p99DuringOverAtRest: round(during.p99Ms / atRest.p99Ms),
              refreshesInWindow: refreshes.durationsMs.length,
              refreshBusyShare: round(Math.min(1, refreshes.busyMs / windowMs)),
              refreshErrors: refreshes.errors.length,
              ...(refreshes.errors[0] ? { firstRefreshError: refreshes.errors[0] } : {}),
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

/** The analytics-svc benchmarks, by name. */
export const analyticsScenarios: Record<string, Scenario> = {
  'analytics-read': (environment, settings) => analyticsRead(environment, settings, sizesFromEnvironment([1e4, 1e6])),
  'analytics-read-1e7': (environment, settings) => analyticsRead(environment, settings, [1e4, 1e6, 1e7]),
};
