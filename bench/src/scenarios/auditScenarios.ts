import { auditV1 } from '@clinical/contracts';
import pg from 'pg';
import type { BenchEnvironment } from '../benchEnvironment.js';
import { runLoad, type LoadResult } from '../loadGenerator.js';
import { measureGrpcBaseline, type BaselineQuery } from '../baseline.js';
import { startServiceProcess, unaryCaller } from '../processes.js';
import type { ScenarioReport } from '../report.js';
import { measureAtEachLoad, type LoadShape, type RunSettings, type Scenario } from '../scenario.js';
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

/**
 * The floor under VerifyAuditTrail: one statement that recomputes every
 * chained event's row hash once (content hash and link), with nothing
 * compared or reported; events per second.
 */
async function measureRawTrailHashing(environment: BenchEnvironment): Promise<number> {
  const admin = new pg.Client({ connectionString: environment.database.url });
  await admin.connect();
  try {
    const started = performance.now();
    const { rows } = await admin.query<{ hashed: string }>(
      `SELECT count(sha256(c.previous_hash || audit_event_content_hash(e.event_id, e.event_seq, e.event_type, e.entity_type,
                e.entity_id, e.entity_key, e.patient_id, e.user_id, e.action, e.payload, e.ip_address, e."timestamp",
                e.request_id, e.trace_id, e.reason, e.db_role))) AS hashed
         FROM audit_chain AS c JOIN audit_events AS e ON e.event_seq = c.event_seq`,
    );
    return Number(rows[0]!.hashed) / ((performance.now() - started) / 1_000);
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

/**
 * What a hand-written handler with no checks, no page budget, no chain
 * verification and no access audit would run for the same page: the floor a
 * database read puts under the latency, whatever serves it.
 */
const RAW_PAGE_SQL = `
  SELECT e.event_id, e.event_type, e.entity_type, e.entity_key, e.patient_id, e.user_id, e.action, e.payload,
         host(e.ip_address) AS ip_address, e.request_id, e.trace_id, e.reason, e."timestamp",
         c.sequence_number, encode(c.previous_hash, 'hex') AS previous_hash, encode(c.row_hash, 'hex') AS row_hash
    FROM audit_events AS e LEFT JOIN audit_chain AS c ON c.event_seq = e.event_seq
   WHERE e.patient_id = $1
   ORDER BY e."timestamp" DESC, e.event_id DESC
   LIMIT $2`;

/**
 * ListAuditEvents for one patient (first pages of 100) with the trail
 * filled, against two baselines: a bare grpc-js server answering with the
 * same bytes, and the same server running the page's SELECT through raw pg
 * before it answers. Then one whole-trail VerifyAuditTrail, reported in
 * events per second beside the rate at which one raw statement merely
 * recomputes every row hash.
 */
async function auditTrail(environment: BenchEnvironment, settings: RunSettings): Promise<ScenarioReport[]> {
  const admin = new pg.Client({ connectionString: environment.database.url });
  await admin.connect();
  const { rows } = await admin.query<{ patient_id: string }>(
    `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date) VALUES ('BENCH-AUDIT', 'SITE-01', 'RA001', '2024-01-01')
     RETURNING patient_id`,
  );
  await admin.end();
  const patientId = rows[0]!.patient_id;
  const insertRate = await storeEvents(environment, patientId);
  const token = await environment.token({ roles: ['auditor'], sites: '*' });
  const service = await startServiceProcess('audit-svc', { ...environment.serviceEnv, DATABASE_STATEMENT_TIMEOUT_MS: '600000' });
  const sealSeconds = await waitUntilSealed(environment);
  await vacuumTrail(environment);
  const list = unaryCaller(
    service.address,
    '/clinical.audit.v1.AuditService/ListAuditEvents',
    (request: auditV1.ListAuditEventsRequest) => auditV1.ListAuditEventsRequest.encode(request).finish(),
    (bytes) => auditV1.ListAuditEventsResponse.decode(bytes),
    token,
  );
  const verify = unaryCaller(
    service.address,
    '/clinical.audit.v1.AuditService/VerifyAuditTrail',
    (request: auditV1.VerifyAuditTrailRequest) => auditV1.VerifyAuditTrailRequest.encode(request).finish(),
    (bytes) => auditV1.VerifyAuditTrailResponse.decode(bytes),
    token,
  );
  try {
    const request = auditV1.ListAuditEventsRequest.fromPartial({ patientId, pageSize: 100 });
    const sample = await list.call(request);
    const baselineAt = (at: LoadShape, query?: BaselineQuery) =>
      measureGrpcBaseline(
        request,
        (message: auditV1.ListAuditEventsRequest) => auditV1.ListAuditEventsRequest.encode(message).finish(),
        (bytes) => auditV1.ListAuditEventsResponse.decode(bytes),
        auditV1.ListAuditEventsResponse.encode(sample).finish(),
        at,
        query,
      );
    const pageQuery: BaselineQuery = {
      url: environment.database.urlAs('clinical_audit_svc'),
      text: RAW_PAGE_SQL,
      values: [patientId, request.pageSize],
    };
    const runs = await measureAtEachLoad(settings, { oneCaller: true }, async (at) => {
      const echo = await baselineAt(at);
      const rawSql = await baselineAt(at, pageQuery);
      const measured = await runLoad({ ...at, call: () => list.call(request).then(() => undefined) });
      const common = { measured, concurrency: at.concurrency, servicePeakRssMiB: service.peakRssMiB() };
      return [
        { scenario: `list-audit-events ${at.label}`, baseline: echo, ...common },
        { scenario: `list-audit-events ${at.label} vs raw SQL`, baselineName: 'bare grpc-js + raw SQL of the page', baseline: rawSql, ...common },
      ];
    });

    const started = performance.now();
    const verified = await verify.call(auditV1.VerifyAuditTrailRequest.fromPartial({}));
    const verifySeconds = (performance.now() - started) / 1_000;
    const rawHashingRate = await measureRawTrailHashing(environment);
    const verifyRate = Number(verified.checkedCount) / verifySeconds;
    const extra = {
      storedEvents: STORED_EVENTS,
      eventsPerPatientPage: sample.events.length,
      queuedInsertEventsPerSecond: Math.round(insertRate),
      sealSeconds: Number(sealSeconds.toFixed(1)),
      sealedEventsPerSecond: Math.round(STORED_EVENTS / sealSeconds),
      verifyIntact: String(verified.intact),
      verifyCheckedEvents: Number(verified.checkedCount),
      verifySeconds: Number(verifySeconds.toFixed(2)),
      verifyEventsPerSecond: Math.round(verifyRate),
      rawHashingEventsPerSecond: Math.round(rawHashingRate),
      verifyRatioToRawHashing: Number((verifyRate / rawHashingRate).toFixed(2)),
    };
    return runs.map((run) => ({ ...run, extra }));
  } finally {
    list.close();
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
  'get-patient-audit-on-off': getPatientAuditOnOff,
};
