import { hash } from 'node:crypto';
import { auditV1 } from '@clinical/contracts';
import { copyOutRows } from '@clinical/db';
import { cpuSeconds, residentMiB } from '@clinical/testing';
import pg from 'pg';
import type { BenchEnvironment } from '../benchEnvironment.js';
import { runLoad, type LoadResult } from '../loadGenerator.js';
import { compareWithFloor } from '../floorComparison.js';
import type { FloorSpec } from '../floorServer.js';
import { startServiceProcess, unaryCaller } from '../processes.js';
import type { ScenarioReport } from '../report.js';
import { measureAtEachLoad, type RunSettings, type Scenario } from '../scenario.js';
import { getPatientCaller, seedPatients, SITES } from './patientScenarios.js';

/** Events stored before measuring; AUDIT_BENCH_EVENTS=10000000 for the 10M case (minutes to generate). */
const STORED_EVENTS = Number(process.env.AUDIT_BENCH_EVENTS ?? 1_000_000);
const CHUNK = 200_000;

/**
 * Fills the trail set-based, as patient-svc's role (so every event is
 * queued for sealing like a service's), one chunk per transaction. One event
 * in 100 is about `patientId`.
 */
async function storeEvents(environment: BenchEnvironment, patientId: string): Promise<number> {
  const client = new pg.Client({ connectionString: environment.database.urlAs('clinical_patient_svc') });
  await client.connect();
  const started = performance.now();
  try {
    for (let stored = 0; stored < STORED_EVENTS; stored += CHUNK) {
      await client.query(
        `INSERT INTO audit_events (event_type, entity_type, entity_id, entity_key, patient_id, user_id, action, payload,
                                   ip_address, "timestamp", trace_id)
         SELECT 'DATA_ACCESS', 'patient', p, p::text, p, 'monitor-' || (g % 50), 'READ',
                '{"method": "/clinical.patient.v1.PatientService/GetPatient"}', '10.0.0.1',
                now() - make_interval(secs => ($2 - g) / 100.0), md5(g::text)
           FROM generate_series($1::int, $1::int + $3 - 1) AS g,
                LATERAL (SELECT CASE WHEN g % 100 = 0 THEN $4::uuid ELSE gen_random_uuid() END AS p) AS x`,
        [stored, STORED_EVENTS, Math.min(CHUNK, STORED_EVENTS - stored), patientId],
      );
    }
  } finally {
    await client.end();
  }
  return STORED_EVENTS / ((performance.now() - started) / 1_000);
}

/**
 * Vacuums the trail and gathers its planner statistics, as autovacuum does
 * in a deployment after a bulk of inserts (the test PostgreSQL runs with
 * autovacuum off): without it, the trail's queries are planned on no
 * statistics at all (VerifyAuditTrail then hashed 500k wide event rows per
 * batch, spilling ~290 MB to temp files, where a merge join on event_seq
 * reads no temp), and every tick of the sealer walks the queue's dead
 * entries of the events it sealed. As the tables' owner: a service role's
 * VACUUM and ANALYZE are skipped with a mere warning.
 */
async function vacuumTrail(environment: BenchEnvironment): Promise<void> {
  const admin = new pg.Client({ connectionString: environment.database.url });
  await admin.connect();
  try {
    await admin.query('VACUUM (ANALYZE) audit_events, audit_chain, audit_chain_pending');
  } finally {
    await admin.end();
  }
}

/** Waits until audit-svc's sealer has chained every queued event; returns how long that took. */
async function waitUntilSealed(environment: BenchEnvironment): Promise<number> {
  const admin = new pg.Client({ connectionString: environment.database.url });
  await admin.connect();
  const started = performance.now();
  try {
    for (;;) {
      const { rows } = await admin.query<{ pending: boolean }>('SELECT EXISTS (SELECT 1 FROM audit_chain_pending) AS pending');
      if (!rows[0]!.pending) {
        return (performance.now() - started) / 1_000;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    await admin.end();
  }
}

const LIST_AUDIT_EVENTS_PATH = '/clinical.audit.v1.AuditService/ListAuditEvents';
/** audit-svc's payload budget of a page (auditEventQueries.ts PAGE_PAYLOAD_BUDGET_BYTES). */
const PAGE_PAYLOAD_BUDGET_BYTES = 3 * 1024 * 1024;

/**
 * The statement audit-svc reads a first page of one patient's events with,
 * for a caller of every site (apps/audit-svc/src/trail/auditEventQueries.ts
 * selectAuditEvents; keep the two alike): the next page_size + 1 events off
 * the index, the page chosen in SQL by size and payload budget, only the
 * page's events joined to the chain.
 */
const PAGE_SQL = `
    SELECT e.event_id, e.event_type, e.entity_type, e.entity_key, e.patient_id, e.user_id, e.action, e.payload,
           host(e.ip_address) AS ip_address, e.request_id, e.trace_id, e.reason, e."timestamp" AS occurred_at,
           (extract(epoch FROM e."timestamp") * 1000000)::int8 AS occurred_micros,
           c.sequence_number, encode(c.previous_hash, 'hex') AS previous_hash, encode(c.row_hash, 'hex') AS row_hash,
           e.payload_bytes, e.candidates > count(*) OVER () AS more
      FROM (SELECT w.*, count(*) OVER () AS candidates,
                   row_number() OVER win <= $1
                     AND (row_number() OVER win = 1 OR sum(w.payload_bytes) OVER win <= $2) AS in_page
              FROM (SELECT e.*
                      FROM audit_events AS e
                     WHERE true AND e.patient_id = $3::uuid
                     ORDER BY e."timestamp" DESC, e.event_id DESC
                     LIMIT $4) AS w
            WINDOW win AS (ORDER BY w."timestamp" DESC, w.event_id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS e
      LEFT JOIN audit_chain AS c ON c.event_seq = e.event_seq
     WHERE e.in_page
     ORDER BY e."timestamp" DESC, e.event_id DESC`;

/**
 * ListAuditEvents for one patient (first pages of 100) with the trail
 * filled and sealed, at each load (one caller included), against its
 * database-read floor: the page's SELECT (the patient and page size taken
 * from the request) through raw pg as audit-svc's role, the same page encoded
 * on every call; CPU per call of both from /proc. VerifyAuditTrail has its
 * own scenario (audit-verify).
 */
async function auditTrail(environment: BenchEnvironment, settings: RunSettings): Promise<ScenarioReport[]> {
  const patientId = await benchPatient(environment);
  const insertRate = await storeEvents(environment, patientId);
  const token = await environment.token({ roles: ['auditor'], sites: '*' });
  const service = await startServiceProcess('audit-svc', { ...environment.serviceEnv, DATABASE_STATEMENT_TIMEOUT_MS: '600000' });
  try {
    const sealSeconds = await waitUntilSealed(environment);
    await vacuumTrail(environment);
    const request = auditV1.ListAuditEventsRequest.fromPartial({ patientId, pageSize: 100 });
    const list = unaryCaller(
      service.address,
      LIST_AUDIT_EVENTS_PATH,
      (message: auditV1.ListAuditEventsRequest) => auditV1.ListAuditEventsRequest.encode(message).finish(),
      (bytes) => auditV1.ListAuditEventsResponse.decode(bytes),
      token,
    );
    let sample: auditV1.ListAuditEventsResponse;
    try {
      sample = await list.call(request);
    } finally {
      list.close();
    }
    const floor: FloorSpec = {
      path: LIST_AUDIT_EVENTS_PATH,
      response: Buffer.from(auditV1.ListAuditEventsResponse.encode(sample).finish()).toString('base64'),
      responseType: 'auditV1.ListAuditEventsResponse',
      requestType: 'auditV1.ListAuditEventsRequest',
      databaseUrl: environment.database.urlAs('clinical_audit_svc'),
      statements: [
        {
          text: PAGE_SQL,
          expectRows: true,
          values: [{ request: 'pageSize' }, PAGE_PAYLOAD_BUDGET_BYTES, { request: 'patientId' }, request.pageSize + 1],
        },
      ],
    };
    const extra = {
      storedEvents: STORED_EVENTS,
      eventsPerPatientPage: sample.events.length,
      queuedInsertEventsPerSecond: Math.round(insertRate),
      sealSeconds: Number(sealSeconds.toFixed(1)),
      sealedEventsPerSecond: Math.round(STORED_EVENTS / sealSeconds),
    };
    return await measureAtEachLoad(settings, { oneCaller: true }, async (shape) => [
      await compareWithFloor({
        scenario: 'list-audit-events',
        baselineName: 'database-read floor',
        service,
        floor,
        authorization: `Bearer ${token}`,
        serviceRequests: [auditV1.ListAuditEventsRequest.encode(request).finish()],
        shape,
        extra,
      }),
    ]);
  } finally {
    await service.stop();
  }
}

/** The patient one event in 100 of the stored trail is about. */
async function benchPatient(environment: BenchEnvironment): Promise<string> {
  const admin = new pg.Client({ connectionString: environment.database.url });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ patient_id: string }>(
      `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date) VALUES ('BENCH-AUDIT', 'SITE-01', 'RA001', '2024-01-01')
       RETURNING patient_id`,
    );
    return rows[0]!.patient_id;
  } finally {
    await admin.end();
  }
}

/**
 * Chains every queued event with the function audit-svc's sealer calls, as
 * its role, in batches of 200,000 rather than the service's 50,000 every
 * 200 ms: the same chain, sooner. Returns the seconds it took.
 */
async function sealStoredEvents(environment: BenchEnvironment): Promise<number> {
  const sealer = new pg.Client({ connectionString: environment.database.urlAs('clinical_audit_svc') });
  await sealer.connect();
  const started = performance.now();
  try {
    for (;;) {
      const { rows } = await sealer.query<{ sealed: number }>('SELECT audit_chain_seal_pending(200000) AS sealed');
      if (rows[0]!.sealed < 200_000) {
        return (performance.now() - started) / 1_000;
      }
    }
  } finally {
    await sealer.end();
  }
}

/** VerifyAuditTrail's settings in this scenario, given to the service and to its floor alike. */
const VERIFY_CONNECTIONS = Number(process.env.AUDIT_VERIFY_CONNECTIONS ?? 2);
const VERIFY_BATCH_SIZE = Number(process.env.AUDIT_VERIFY_BATCH_SIZE ?? 500_000);
/** Measured rounds of each side (after one of each to warm up), alternating which goes first. */
const VERIFY_ROUNDS = Number(process.env.AUDIT_VERIFY_ROUNDS ?? 3);

/**
 * The statement audit-svc's verification reads one slice of event_seq
 * values with (apps/audit-svc/src/trail/scanChainSlice.ts; keep the two
 * alike): chain entries and events in one full merge join.
 */
const sliceStatement = (low: number, high: number, last: number) => `COPY (
    SELECT c.sequence_number, c.previous_hash, c.content_hash, c.row_hash,
           e.event_id, e.event_seq, e.event_type, e.entity_type, e.entity_id, e.entity_key, e.patient_id, e.user_id,
           e.action, e.payload, e.ip_address::text, e."timestamp", e.request_id, e.trace_id, e.reason, e.db_role,
           CASE WHEN c.sequence_number IS NOT NULL THEN NULL
                WHEN EXISTS (SELECT 1 FROM audit_chain AS o WHERE o.event_seq = e.event_seq) THEN 2
                WHEN EXISTS (SELECT 1 FROM audit_chain_pending AS p WHERE p.event_seq = e.event_seq) THEN 1
                ELSE 0 END AS unchained
      FROM (SELECT sequence_number, event_seq, previous_hash, content_hash, row_hash FROM audit_chain
             WHERE event_seq BETWEEN ${low} AND ${high} AND sequence_number BETWEEN 1 AND ${last}) AS c
      FULL JOIN (SELECT * FROM audit_events WHERE event_seq BETWEEN ${low} AND ${high}) AS e ON e.event_seq = c.event_seq
  ) TO STDOUT (FORMAT binary)`;

/** One timed pass: events per second, and the CPU it took in this process (or the service's) and in PostgreSQL. */
interface VerifyPass {
  readonly events: number;
  readonly seconds: number;
  readonly clientCpuSeconds: number;
  readonly databaseCpuSeconds: number;
}

/**
 * The floor under VerifyAuditTrail, in this process: the same rows read the
 * same way (the service's COPY statement, binary, by the same number of
 * connections taking the same slices in turn, through the same reader) and
 * hashed with node:crypto as they arrive, two sha256 per entry as the
 * verification computes, checking nothing: each event's stored bytes as
 * they came (no canonical text built), and each entry's previous_hash ||
 * content_hash. It runs on this process's main thread, where the service
 * scans on a worker thread of its own. What remains between them is what
 * verifying adds: the canonical text, the comparisons, the links and gaps,
 * the snapshot, the worker, gRPC.
 */
async function verifyFloor(environment: BenchEnvironment): Promise<VerifyPass> {
  const admin = new pg.Client({ connectionString: environment.database.url });
  await admin.connect();
  const { rows } = await admin.query<{ low: string; high: string; head: string }>(
    `SELECT least((SELECT min(event_seq) FROM audit_events), (SELECT min(event_seq) FROM audit_chain)) AS low,
            greatest((SELECT max(event_seq) FROM audit_events), (SELECT max(event_seq) FROM audit_chain)) AS high,
            (SELECT sequence_number FROM audit_chain_head) AS head`,
  );
  await admin.end();
  const low = Number(rows[0]!.low);
  const high = Number(rows[0]!.high);
  const head = Number(rows[0]!.head);
  const readers = await Promise.all(
    Array.from({ length: VERIFY_CONNECTIONS }, async () => {
      const reader = new pg.Client({ connectionString: environment.database.urlAs('clinical_audit_svc') });
      await reader.connect();
      await reader.query('SET max_parallel_workers_per_gather = 0; SET enable_hashjoin = off');
      const { rows: pid } = await reader.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      return { reader, pid: pid[0]!.pid };
    }),
  );
  try {
    const databaseBefore = readers.map(({ pid }) => cpuSeconds(pid));
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    const linkInput = Buffer.allocUnsafe(64);
    let events = 0;
    let digests = 0;
    let next = low;
    await Promise.all(
      readers.map(async ({ reader }) => {
        while (next <= high) {
          const from = next;
          next += VERIFY_BATCH_SIZE;
          await copyOutRows(reader, sliceStatement(from, Math.min(from + VERIFY_BATCH_SIZE - 1, high), head), 21, (buffer, starts, lengths) => {
            if (lengths[0]! >= 0) {
              events += 1;
              for (let index = 0; index < 32; index += 1) {
                linkInput[index] = buffer[starts[1]! + index]!;
                linkInput[32 + index] = buffer[starts[2]! + index]!;
              }
              digests += hash('sha256', linkInput, 'binary').length;
            }
            if (lengths[4]! >= 0) {
              digests += hash('sha256', buffer.subarray(starts[4]!, starts[19]! + lengths[19]!), 'binary').length;
            }
          });
        }
      }),
    );
    const seconds = (performance.now() - started) / 1_000;
    const cpu = process.cpuUsage(cpuBefore);
    if (digests === 0 && events > 0) {
      throw new Error('the floor hashed nothing');
    }
    return {
      events,
      seconds,
      clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
      databaseCpuSeconds: readers.reduce((sum, { pid }, index) => sum + cpuSeconds(pid) - databaseBefore[index]!, 0),
    };
  } finally {
    await Promise.all(readers.map(({ reader }) => reader.end()));
  }
}

/**
 * The CPU time PostgreSQL's backends named `applicationName` spent while
 * `work` ran: they come and go with it (VerifyAuditTrail opens its readers
 * per call), so their /proc counters are read every 20 ms while they live.
 * Zero when PostgreSQL runs elsewhere (no /proc of its).
 */
async function backendCpuDuring<T>(environment: BenchEnvironment, applicationName: string, work: () => Promise<T>): Promise<{ result: T; cpuSeconds: number }> {
  const watcher = new pg.Client({ connectionString: environment.database.url });
  await watcher.connect();
  const lastSeen = new Map<number, number>();
  let running = true;
  const watching = (async () => {
    while (running) {
      const { rows } = await watcher.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [applicationName]);
      for (const { pid } of rows) {
        lastSeen.set(pid, Math.max(lastSeen.get(pid) ?? 0, cpuSeconds(pid)));
      }
      for (const pid of lastSeen.keys()) {
        lastSeen.set(pid, Math.max(lastSeen.get(pid)!, cpuSeconds(pid)));
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  try {
    const result = await work();
    return { result, cpuSeconds: [...lastSeen.values()].reduce((sum, seconds) => sum + seconds, 0) };
  } finally {
    running = false;
    await watching;
    await watcher.end();
  }
}

/** A pass as a LoadResult of one call, whose `rps` is events per second. */
const passResult = (pass: VerifyPass): LoadResult => ({
  calls: 1,
  errors: 0,
  seconds: pass.seconds,
  rps: pass.events / pass.seconds,
  p50Ms: pass.seconds * 1_000,
  p90Ms: pass.seconds * 1_000,
  p99Ms: pass.seconds * 1_000,
  maxMs: pass.seconds * 1_000,
});

const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const round2 = (value: number) => Number(value.toFixed(2));

/**
 * VerifyAuditTrail over a stored trail (1M events; AUDIT_BENCH_EVENTS for
 * more), through audit-svc over gRPC, against its floor measured in the
 * same run (verifyFloor): one warm-up call of each, then rounds taking
 * turns, the order alternating so that the machine's drift falls on both.
 * The target: 1M events/s, or at least 0.8 of the floor. Also reported: CPU
 * per event of both sides (the client side's process and PostgreSQL's
 * backends), which other work on a shared machine disturbs less than time.
 */
async function auditVerify(environment: BenchEnvironment, _settings: RunSettings): Promise<ScenarioReport> {
  const insertRate = await storeEvents(environment, await benchPatient(environment));
  const sealSeconds = await sealStoredEvents(environment);
  await vacuumTrail(environment);
  const token = await environment.token({ roles: ['auditor'], sites: '*' });
  const service = await startServiceProcess('audit-svc', {
    ...environment.serviceEnv,
    DATABASE_STATEMENT_TIMEOUT_MS: '600000',
    AUDIT_VERIFY_CONNECTIONS: String(VERIFY_CONNECTIONS),
    AUDIT_VERIFY_BATCH_SIZE: String(VERIFY_BATCH_SIZE),
  });
  const verify = unaryCaller(
    service.address,
    '/clinical.audit.v1.AuditService/VerifyAuditTrail',
    (request: auditV1.VerifyAuditTrailRequest) => auditV1.VerifyAuditTrailRequest.encode(request).finish(),
    (bytes) => auditV1.VerifyAuditTrailResponse.decode(bytes),
    token,
  );
  const verifyPass = async (): Promise<VerifyPass> => {
    const serviceCpuBefore = cpuSeconds(service.pid);
    const started = performance.now();
    const { result, cpuSeconds: databaseCpuSeconds } = await backendCpuDuring(environment, 'audit-svc-verify', () =>
      verify.call(auditV1.VerifyAuditTrailRequest.fromPartial({})),
    );
    const seconds = (performance.now() - started) / 1_000;
    if (!result.intact || Number(result.checkedCount) < STORED_EVENTS) {
      throw new Error(`VerifyAuditTrail: intact ${result.intact}, ${result.checkedCount} checked of ${STORED_EVENTS}`);
    }
    return { events: Number(result.checkedCount), seconds, clientCpuSeconds: cpuSeconds(service.pid) - serviceCpuBefore, databaseCpuSeconds };
  };
  try {
    const serviceRssBeforeVerifyMiB = residentMiB(service.pid);
    await verifyPass();
    await verifyFloor(environment);
    const services: VerifyPass[] = [];
    const floors: VerifyPass[] = [];
    for (let round = 0; round < VERIFY_ROUNDS; round += 1) {
      if (round % 2 === 0) {
        services.push(await verifyPass());
        floors.push(await verifyFloor(environment));
      } else {
        floors.push(await verifyFloor(environment));
        services.push(await verifyPass());
      }
    }
    const rate = (pass: VerifyPass) => pass.events / pass.seconds;
    const cpuPerEvent = (pass: VerifyPass) => ((pass.clientCpuSeconds + pass.databaseCpuSeconds) * 1e6) / pass.events;
    const serviceRate = median(services.map(rate));
    const floorRate = median(floors.map(rate));
    const byRate = (passes: VerifyPass[], value: number) => passes.find((pass) => rate(pass) === value)!;
    const databaseCpuMeasured = services.every((pass) => pass.databaseCpuSeconds > 0) && floors.every((pass) => pass.databaseCpuSeconds > 0);
    return {
      scenario: 'verify-audit-trail',
      baselineName: `floor: binary COPY of the same rows on ${VERIFY_CONNECTIONS} connections, sha256 with node:crypto, no checks`,
      baseline: passResult(byRate(floors, floorRate)),
      measured: passResult(byRate(services, serviceRate)),
      concurrency: 1,
      latenciesComparable: false,
      servicePeakRssMiB: service.peakRssMiB(),
      extra: {
        storedEvents: STORED_EVENTS,
        serviceRssBeforeVerifyMiB: Math.round(serviceRssBeforeVerifyMiB),
        verifyConnections: VERIFY_CONNECTIONS,
        verifyBatchSize: VERIFY_BATCH_SIZE,
        queuedInsertEventsPerSecond: Math.round(insertRate),
        sealedEventsPerSecond: Math.round(STORED_EVENTS / sealSeconds),
        verifyEventsPerSecond: Math.round(serviceRate),
        floorEventsPerSecond: Math.round(floorRate),
        verifyRatioToFloor: round2(serviceRate / floorRate),
        roundRatios: services.map((pass, index) => (rate(pass) / rate(floors[index]!)).toFixed(2)).join(' '),
        verifyEventsPerSecondRounds: services.map((pass) => Math.round(rate(pass))).join(' '),
        floorEventsPerSecondRounds: floors.map((pass) => Math.round(rate(pass))).join(' '),
        ...(databaseCpuMeasured
          ? {
              verifyCpuUsPerEvent: round2(median(services.map(cpuPerEvent))),
              floorCpuUsPerEvent: round2(median(floors.map(cpuPerEvent))),
              cpuRatioFloorToVerify: round2(median(floors.map(cpuPerEvent)) / median(services.map(cpuPerEvent))),
              verifyServiceCpuUsPerEvent: round2(median(services.map((pass) => (pass.clientCpuSeconds * 1e6) / pass.events))),
              floorClientCpuUsPerEvent: round2(median(floors.map((pass) => (pass.clientCpuSeconds * 1e6) / pass.events))),
              verifyDatabaseCpuUsPerEvent: round2(median(services.map((pass) => (pass.databaseCpuSeconds * 1e6) / pass.events))),
              floorDatabaseCpuUsPerEvent: round2(median(floors.map((pass) => (pass.databaseCpuSeconds * 1e6) / pass.events))),
            }
          : {}),
      },
    };
  } finally {
    verify.close();
    await service.stop();
  }
}

/** Rounds each side of the on/off comparison runs, alternating. */
const AUDIT_ON_OFF_ROUNDS = 5;

/** The round with the median throughput (the upper median for an even count). */
function medianRound(rounds: readonly LoadResult[]): LoadResult {
  return [...rounds].sort((a, b) => a.rps - b.rps)[Math.floor(rounds.length / 2)]!;
}

/**
 * GetPatient served from the cache with access auditing on, against the same
 * service with it off (ACCESS_AUDIT=off), in the same run: what recording
 * every read costs. The target is at most 15% of throughput. Both services
 * run side by side and take turns, round after round, so that the machine's
 * drift over the run falls on both sides alike; each side reports its
 * median round, and the extra figures every round's ratio.
 */
async function getPatientAuditOnOff(environment: BenchEnvironment, settings: RunSettings): Promise<ScenarioReport> {
  const ids = await seedPatients(environment.database.url, 1_000);
  const token = await environment.token({ roles: ['monitor'], sites: SITES });
  const start = async (accessAudit: 'on' | 'off') => {
    const service = await startServiceProcess('patient-svc', { ...environment.serviceEnv, ACCESS_AUDIT: accessAudit });
    const caller = getPatientCaller(service.address, token);
    for (const patientId of ids) {
      await caller.call({ patientId });
    }
    return { service, caller, rounds: [] as LoadResult[] };
  };
  const off = await start('off');
  const on = await start('on').catch(async (error: unknown) => {
    off.caller.close();
    await off.service.stop();
    throw error;
  });
  try {
    const round = { ...settings, durationMs: settings.durationMs / AUDIT_ON_OFF_ROUNDS };
    for (let index = 0; index < AUDIT_ON_OFF_ROUNDS; index += 1) {
      for (const side of index % 2 === 0 ? [off, on] : [on, off]) {
        side.rounds.push(await runLoad({ ...round, call: (call) => side.caller.call({ patientId: ids[call % ids.length]! }).then(() => undefined) }));
      }
    }
  } finally {
    for (const side of [off, on]) {
      side.caller.close();
      await side.service.stop();
    }
  }
  const admin = new pg.Client({ connectionString: environment.database.url });
  await admin.connect();
  const { rows } = await admin.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM audit_events WHERE event_type = 'DATA_ACCESS'",
  );
  await admin.end();
  const roundRatios = on.rounds.map((result, index) => (result.rps / off.rounds[index]!.rps).toFixed(2));
  return {
    scenario: 'get-patient-audit-on',
    baselineName: 'same service, access auditing off',
    baseline: medianRound(off.rounds),
    measured: medianRound(on.rounds),
    concurrency: settings.concurrency,
    servicePeakRssMiB: on.service.peakRssMiB(),
    extra: {
      rounds: AUDIT_ON_OFF_ROUNDS,
      roundRatios: roundRatios.join(' '),
      totalRatio: Number((overallRps(on.rounds) / overallRps(off.rounds)).toFixed(2)),
      accessEventsWritten: rows[0]!.n,
      readsWithAuditingOn: on.rounds.reduce((total, result) => total + result.calls + result.errors, 0),
    },
  };
}

/** Calls that succeeded per second over all rounds. */
function overallRps(rounds: readonly LoadResult[]): number {
  return rounds.reduce((total, result) => total + result.calls, 0) / rounds.reduce((total, result) => total + result.seconds, 0);
}

/** The audit-svc benchmarks, by name. */
export const auditScenarios: Record<string, Scenario> = {
  'audit-trail': auditTrail,
  'audit-verify': auditVerify,
  'get-patient-audit-on-off': getPatientAuditOnOff,
};
