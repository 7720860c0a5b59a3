import { vitalsV1 } from '@clinical/contracts';
import { BinaryRowWriter, copyRows } from '@clinical/db';
import { cpuSeconds, residentMiB } from '@clinical/testing';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import type { BenchEnvironment } from '../benchEnvironment.js';
import { runLoad, type LoadResult } from '../loadGenerator.js';
import { compareWithFloor } from '../floorComparison.js';
import type { FloorSpec } from '../floorServer.js';
import { startServiceProcess, unaryCaller, type ServerProcess } from '../processes.js';
import type { ScenarioReport } from '../report.js';
import { measureAtEachLoad, type RunSettings, type Scenario } from '../scenario.js';
import { uuidV7, writeUuidV7 } from '../uuidV7.js';

/**
 * vitals-svc benchmarks. Ingestion scenarios report rows per second in the
 * `rps` column (for batches, calls/s x readings per call) and compare, in the
 * same run and on the same rows, with raw binary COPY from this process into
 * a copy of the table the service writes (vital_signs_bulk: `LIKE ...
 * INCLUDING ALL`, so its key, indexes and CHECK constraints, and no trigger):
 * statements of 5,000 rows (the service's chunk, each message's readings
 * grouped by patient as the service groups them), encoded before the clock
 * starts except for their fresh ids: what the database alone costs for those
 * rows. And with the old system's way, one INSERT per reading in a loop on
 * one connection, in two forms: all in one transaction (the loop at its
 * kindest) and each committed on its own. Clients send pre-encoded bytes so
 * that the load generator spends as little CPU as possible on the shared
 * cores. ListVitals scenarios read one patient's day.
 */

const SITES = ['SITE-01', 'SITE-02', 'SITE-03', 'SITE-04'];
const MESSAGE_READINGS = 5_000;
const STREAM_READINGS = 1_000_000;
const INSERT_LOOP_SECONDS = 5;
const STREAM_PATH = '/clinical.vitals.v1.VitalsService/StreamVitals';
/** The columns vitals-svc writes to vital_signs_bulk, in its order. */
const COLUMNS = ['vital_id', 'patient_id', 'visit_date', 'measurement_time', 'systolic_bp', 'diastolic_bp', 'heart_rate', 'temperature', 'data_batch'];
/** The raw baseline's table: vital_signs_bulk's columns, key, indexes and checks, no trigger. */
const RAW_TABLE = 'vital_signs_bulk_raw';

// ---------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------

/** Inserts `count` enrolled patients in SQL and returns their ids. */
async function seedPatients(databaseUrl: string, count: number): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ patient_id: string }>(
      `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, status)
       SELECT 'V' || md5(random()::text) || '-' || g, ($2::text[])[1 + g % 4], 'RA001', date '2024-01-01' + g % 300,
              CASE WHEN g % 10 = 0 THEN 'SCREENING' ELSE 'ENROLLED' END
         FROM generate_series(1, $1) AS g
       RETURNING patient_id`,
      [count, SITES],
    );
    return rows.map((row) => row.patient_id);
  } finally {
    await client.end();
  }
}

/** A realistic reading: every measure present, device metadata on one reading in ten. */
function benchReading(patientId: string, index: number, baseMs: number): vitalsV1.VitalSigns {
  return vitalsV1.VitalSigns.fromPartial({
    patientId,
    measurementTime: new Date(baseMs - index * 1_000),
    systolicBp: 100 + (index % 60),
    diastolicBp: 60 + (index % 30),
    heartRate: 50 + (index % 80),
    temperatureCelsius: 36 + (index % 20) / 10,
    deviceData: index % 10 === 0 ? { model: 'BP-200', firmware: '1.4.2', channel: index % 4 } : undefined,
  });
}

/** One message's readings as binary COPY rows, with where each row's vital_id goes (set before each COPY). */
interface RawChunk {
  readonly rows: Buffer;
  readonly idOffsets: readonly number[];
}

/**
 * The readings as vitals-svc writes them (same columns, same binary values,
 * grouped by patient in the order patients first appear), ids left to fill.
 */
function rawChunk(readings: readonly vitalsV1.VitalSigns[]): RawChunk {
  const byPatient = new Map<string, vitalsV1.VitalSigns[]>();
  for (const reading of readings) {
    byPatient.set(reading.patientId, [...(byPatient.get(reading.patientId) ?? []), reading]);
  }
  const writer = new BinaryRowWriter(readings.length * 128);
  const idOffsets: number[] = [];
  for (const reading of [...byPatient.values()].flat()) {
    const timeMs = (reading.measurementTime as Date).getTime();
    writer.row(COLUMNS.length);
    // The id's 16 bytes follow its 4-byte length.
    idOffsets.push(writer.byteLength + 4);
    writer
      .uuidBytes(Buffer.alloc(16))
      .uuid(reading.patientId)
      .date(Math.floor(timeMs / 86_400_000))
      .timestamptz(timeMs)
      .int4(reading.systolicBp!)
      .int4(reading.diastolicBp!)
      .int4(reading.heartRate!)
      .numeric(Math.round(reading.temperatureCelsius! * 10), 1);
    if (reading.deviceData) {
      writer.jsonb(JSON.stringify(reading.deviceData));
    } else {
      writer.null();
    }
  }
  return { rows: Buffer.from(writer.bytes()), idOffsets };
}

/** `count` distinct messages of MESSAGE_READINGS readings over `patients`, as readings and as encoded bytes. */
function buildMessages(patients: readonly string[], count: number): { readings: vitalsV1.VitalSigns[]; bytes: Uint8Array }[] {
  const baseMs = Date.now() - 60_000;
  return Array.from({ length: count }, (_, message) => {
    const readings = Array.from({ length: MESSAGE_READINGS }, (_, index) => {
      const position = message * MESSAGE_READINGS + index;
      return benchReading(patients[position % patients.length]!, position, baseMs);
    });
    return { readings, bytes: vitalsV1.StreamVitalsRequest.encode({ readings, requestId: '' }).finish() };
  });
}

// ---------------------------------------------------------------------------
// Measurement helpers
// ---------------------------------------------------------------------------

function percentile(sorted: readonly number[], fraction: number): number {
  return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

/** A LoadResult whose `rps` is rows per second, with latency percentiles of `latenciesMs` (one per call). */
function rowsResult(rows: number, seconds: number, latenciesMs: readonly number[], errors = 0, firstError?: string): LoadResult {
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  return {
    calls: latenciesMs.length,
    errors,
    firstError,
    seconds,
    rps: rows / seconds,
    p50Ms: percentile(sorted, 0.5),
    p90Ms: percentile(sorted, 0.9),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

/** Several row-count measurements as one: total rows over total time. */
function combined(results: readonly LoadResult[]): LoadResult {
  const seconds = results.reduce((sum, result) => sum + result.seconds, 0);
  const rows = results.reduce((sum, result) => sum + result.rps * result.seconds, 0);
  return { ...rowsResult(rows, seconds, []), ...percentilesOf(results), calls: results.reduce((sum, result) => sum + result.calls, 0) };
}

/** The worst of each percentile of several results (their samples are not kept). */
function percentilesOf(results: readonly LoadResult[]): Pick<LoadResult, 'p50Ms' | 'p90Ms' | 'p99Ms' | 'maxMs'> {
  const worst = (pick: (result: LoadResult) => number) => Math.max(...results.map(pick));
  return { p50Ms: worst((result) => result.p50Ms), p90Ms: worst((result) => result.p90Ms), p99Ms: worst((result) => result.p99Ms), maxMs: worst((result) => result.maxMs) };
}

/** Rows per second of a LoadResult measured in calls, each carrying `rowsPerCall`. */
const perRow = (result: LoadResult, rowsPerCall: number): LoadResult => ({ ...result, rps: result.rps * rowsPerCall });

async function connectAsService(environment: BenchEnvironment): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: environment.database.urlAs('clinical_vitals_svc') });
  await client.connect();
  return client;
}

async function beginAudited(client: pg.ClientBase): Promise<void> {
  await client.query('BEGIN');
  await client.query("SELECT set_config('app.user_id', 'bench-baseline', true)");
}

/** Creates the raw baseline's table: what vitals-svc writes, without its triggers. */
async function createRawTable(environment: BenchEnvironment): Promise<void> {
  const client = new pg.Client({ connectionString: environment.database.url });
  await client.connect();
  try {
    await client.query(`CREATE TABLE ${RAW_TABLE} (LIKE vital_signs_bulk INCLUDING ALL)`);
  } finally {
    await client.end();
  }
}

/** A raw COPY measurement: rows per second, and the CPU its database backends spent. */
interface RawCopyResult {
  readonly result: LoadResult;
  readonly databaseCpuSeconds: number;
}

/**
 * Raw binary COPY of `chunks` into RAW_TABLE (each chunk one statement, its
 * ids fresh v7 ids), `concurrency` connections, each committing every
 * `chunksPerTransaction` chunks, until `totalRows` rows or `durationMs` have passed.
 */
async function measureRawCopy(
  environment: BenchEnvironment,
  chunks: readonly RawChunk[],
  options: { totalRows: number; durationMs: number; concurrency: number; chunksPerTransaction: number },
): Promise<RawCopyResult> {
  const clients = await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      const client = new pg.Client({ connectionString: environment.database.url });
      await client.connect();
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      return { client, pid: rows[0]!.pid };
    }),
  );
  const cpuBefore = clients.reduce((sum, { pid }) => sum + cpuSeconds(pid), 0);
  const latencies: number[] = [];
  let rows = 0;
  let next = 0;
  const started = performance.now();
  const deadline = started + options.durationMs;
  try {
    await Promise.all(
      clients.map(async ({ client }) => {
        while (rows < options.totalRows && performance.now() < deadline) {
          await client.query('BEGIN');
          for (let statement = 0; statement < options.chunksPerTransaction && rows < options.totalRows; statement += 1) {
            const chunk = chunks[next % chunks.length]!;
            next += 1;
            const begin = performance.now();
            // A copy per statement: another connection may be sending the same chunk with its own ids.
            const bytes = Buffer.from(chunk.rows);
            const nowMs = Date.now();
            for (const at of chunk.idOffsets) {
              writeUuidV7(bytes, at, nowMs);
            }
            rows += await copyRows(client, RAW_TABLE, COLUMNS, bytes, { format: 'binary' });
            latencies.push(performance.now() - begin);
          }
          await client.query('COMMIT');
        }
      }),
    );
    const databaseCpuSeconds = clients.reduce((sum, { pid }) => sum + cpuSeconds(pid), 0) - cpuBefore;
    return { result: rowsResult(rows, (performance.now() - started) / 1_000, latencies), databaseCpuSeconds };
  } finally {
    await Promise.all(clients.map(({ client }) => client.end()));
  }
}

/**
 * CPU seconds spent so far by each backend of `role` in the benchmark's
 * database, by pid: read before and after a call to see what the service's
 * connections cost PostgreSQL.
 */
async function backendCpu(environment: BenchEnvironment, role: string): Promise<Map<number, number>> {
  const client = new pg.Client({ connectionString: environment.database.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND usename = $1',
      [role],
    );
    return new Map(rows.map(({ pid }) => [pid, cpuSeconds(pid)]));
  } finally {
    await client.end();
  }
}

/** CPU seconds the backends spent between two `backendCpu` readings (a backend new in `after` counts from 0). */
function cpuSpent(before: ReadonlyMap<number, number>, after: ReadonlyMap<number, number>): number {
  let spent = 0;
  for (const [pid, seconds] of after) {
    spent += seconds - (before.get(pid) ?? 0);
  }
  return spent;
}

const INSERT_ONE = `INSERT INTO vital_signs (vital_id, patient_id, visit_date, measurement_time, systolic_bp, diastolic_bp, heart_rate, temperature, data_batch)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`;

function insertValues(reading: vitalsV1.VitalSigns): unknown[] {
  const time = reading.measurementTime as Date;
  return [
    uuidV7(Date.now()),
    reading.patientId,
    time.toISOString().slice(0, 10),
    time.toISOString(),
    reading.systolicBp,
    reading.diastolicBp,
    reading.heartRate,
    reading.temperatureCelsius?.toFixed(1),
    reading.deviceData ? JSON.stringify(reading.deviceData) : null,
  ];
}

/**
 * The old system's way: one INSERT per reading in a loop (prepared), for
 * INSERT_LOOP_SECONDS. `inOneTransaction`: the loop's kindest form, every
 * INSERT in one transaction; otherwise each INSERT commits on its own
 * (autocommit, as a client library runs a loop of INSERTs by default).
 */
async function measureInsertLoop(
  environment: BenchEnvironment,
  readings: readonly vitalsV1.VitalSigns[],
  inOneTransaction: boolean,
): Promise<LoadResult> {
  const client = await connectAsService(environment);
  const latencies: number[] = [];
  const started = performance.now();
  const deadline = started + INSERT_LOOP_SECONDS * 1_000;
  try {
    if (inOneTransaction) {
      await beginAudited(client);
    } else {
      await client.query("SELECT set_config('app.user_id', 'bench-baseline', false)");
    }
    for (let index = 0; performance.now() < deadline; index += 1) {
      const begin = performance.now();
      await client.query({ name: 'insert-one-reading', text: INSERT_ONE, values: insertValues(readings[index % readings.length]!) });
      latencies.push(performance.now() - begin);
    }
    if (inOneTransaction) {
      await client.query('COMMIT');
    }
  } finally {
    await client.end();
  }
  return rowsResult(latencies.length, (performance.now() - started) / 1_000, latencies);
}

/** Both forms of the loop baseline, on the same readings. */
async function measureInsertLoops(environment: BenchEnvironment, readings: readonly vitalsV1.VitalSigns[]): Promise<InsertLoops> {
  return {
    oneTransaction: await measureInsertLoop(environment, readings, true),
    autocommit: await measureInsertLoop(environment, readings, false),
  };
}

interface InsertLoops {
  readonly oneTransaction: LoadResult;
  readonly autocommit: LoadResult;
}

async function withVitalsService<T>(environment: BenchEnvironment, use: (service: ServerProcess) => Promise<T>): Promise<T> {
  const service = await startServiceProcess('vitals-svc', environment.serviceEnv);
  try {
    return await use(service);
  } finally {
    await service.stop();
  }
}

/**
 * Sends `messageCount` pre-encoded messages as one StreamVitals call,
 * writing only as fast as the server reads (HTTP/2 flow control), and
 * samples the service's RSS every 10% of the stream.
 */
async function sendStream(
  address: string,
  token: string,
  messages: readonly Uint8Array[],
  messageCount: number,
  pid: number,
): Promise<{ ms: number; rssSamples: number[]; accepted: string }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 64 * 1024 * 1024 });
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  const rssSamples: number[] = [];
  const begin = performance.now();
  try {
    const accepted = await new Promise<string>((resolve, reject) => {
      const call = client.makeClientStreamRequest(
        STREAM_PATH,
        (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
        (bytes: Buffer) => vitalsV1.StreamVitalsResponse.decode(bytes),
        metadata,
        (error, response) => (error ? reject(error) : resolve(response?.acceptedCount ?? '0')),
      );
      let sent = 0;
      const tenth = Math.max(1, Math.floor(messageCount / 10));
      const pump = () => {
        while (sent < messageCount) {
          const ok = call.write(messages[sent % messages.length]!);
          sent += 1;
          if (sent % tenth === 0) {
            rssSamples.push(Math.round(residentMiB(pid)));
          }
          if (!ok) {
            call.once('drain', pump);
            return;
          }
        }
        call.end();
      };
      pump();
    });
    return { ms: performance.now() - begin, rssSamples, accepted };
  } finally {
    client.close();
  }
}

// ---------------------------------------------------------------------------
// Ingestion scenarios
// ---------------------------------------------------------------------------

interface IngestionSetup {
  readonly messages: { readings: vitalsV1.VitalSigns[]; bytes: Uint8Array }[];
  /** Each message's readings as the raw baseline COPYs them. */
  readonly rawChunks: RawChunk[];
  readonly token: string;
}

async function ingestionSetup(environment: BenchEnvironment): Promise<IngestionSetup> {
  // One ward's worth of patients, their readings interleaved as a gateway sends them.
  const patients = await seedPatients(environment.database.url, 100);
  const messages = buildMessages(patients, 8);
  await createRawTable(environment);
  return {
    messages,
    rawChunks: messages.map((message) => rawChunk(message.readings)),
    token: await environment.token({ roles: ['service'], sites: '*', sub: 'bench-device-gateway' }),
  };
}

/** Both baselines of an ingestion scenario, as report rows. */
function ingestionReports(
  scenario: string,
  measured: LoadResult,
  copy: LoadResult,
  loops: InsertLoops,
  concurrency: number,
  service: ServerProcess,
  extra: Record<string, number | string>,
): ScenarioReport[] {
  // A call (a whole batch or stream) and a baseline statement (one COPY or INSERT) are not the same unit.
  const common = { concurrency, servicePeakRssMiB: service.peakRssMiB(), latenciesComparable: false };
  return [
    {
      scenario,
      baselineName: 'raw binary COPY, no triggers, rows/s',
      baseline: copy,
      measured,
      ...common,
      extra: {
        ...extra,
        rowsPerSecond: Math.round(measured.rps),
        rawCopyRowsPerSecond: Math.round(copy.rps),
        vsRawCopy: +(measured.rps / copy.rps).toFixed(3),
        vsInsertLoop: +(measured.rps / loops.oneTransaction.rps).toFixed(1),
        vsAutocommitInsertLoop: +(measured.rps / loops.autocommit.rps).toFixed(1),
      },
    },
    { scenario: `${scenario} vs loop`, baselineName: 'one INSERT per reading, one transaction, rows/s', baseline: loops.oneTransaction, measured, ...common },
    { scenario: `${scenario} vs autocommit loop`, baselineName: 'one INSERT per reading, each committed, rows/s', baseline: loops.autocommit, measured, ...common },
  ];
}

/** Microseconds of CPU per row, to two decimals. */
const usPerRow = (cpuSeconds: number, rows: number) => +((cpuSeconds * 1e6) / rows).toFixed(2);

/**
 * StreamVitals: one stream of 1,000,000 readings (200 messages of 5,000), after
 * a warm-up stream, against raw binary COPY of the same readings. Besides rows
 * per second, the CPU each side cost: the service process and its database
 * backends for the stream, the COPY's backend for the baseline (CPU does not
 * depend on what else the shared machine runs, throughput does).
 */
async function ingestStream(environment: BenchEnvironment, _settings: RunSettings): Promise<ScenarioReport[]> {
  const setup = await ingestionSetup(environment);
  const bytes = setup.messages.map((message) => message.bytes);
  return withVitalsService(environment, async (service) => {
    await sendStream(service.address, setup.token, bytes, 10, service.pid);
    // The baseline COPYs the same number of rows, half before and half after the stream, so
    // that a load change on the shared machine during the run weighs on both sides alike.
    const copyHalf = () =>
      measureRawCopy(environment, setup.rawChunks, {
        totalRows: STREAM_READINGS / 2,
        durationMs: 600_000,
        concurrency: 1,
        chunksPerTransaction: Number.POSITIVE_INFINITY,
      });
    const copyBefore = await copyHalf();
    const rssBeforeMiB = Math.round(residentMiB(service.pid));
    const messageCount = STREAM_READINGS / MESSAGE_READINGS;
    const backendsBefore = await backendCpu(environment, 'clinical_vitals_svc');
    const serviceCpuBefore = cpuSeconds(service.pid);
    const stream = await sendStream(service.address, setup.token, bytes, messageCount, service.pid);
    const serviceCpu = cpuSeconds(service.pid) - serviceCpuBefore;
    const streamDatabaseCpu = cpuSpent(backendsBefore, await backendCpu(environment, 'clinical_vitals_svc'));
    if (stream.accepted !== String(STREAM_READINGS)) {
      throw new Error(`stream accepted ${stream.accepted} readings, expected ${STREAM_READINGS}`);
    }
    const measured = rowsResult(STREAM_READINGS, stream.ms / 1_000, [stream.ms]);
    const copyAfter = await copyHalf();
    const copy = combined([copyBefore.result, copyAfter.result]);
    const copyDatabaseCpu = copyBefore.databaseCpuSeconds + copyAfter.databaseCpuSeconds;
    const loops = await measureInsertLoops(environment, setup.messages[0]!.readings);
    return ingestionReports('ingest-stream', measured, copy, loops, 1, service, {
      readings: STREAM_READINGS,
      streamSeconds: +(stream.ms / 1_000).toFixed(2),
      rawCopyDatabaseCpuUsPerRow: usPerRow(copyDatabaseCpu, STREAM_READINGS),
      streamDatabaseCpuUsPerRow: usPerRow(streamDatabaseCpu, STREAM_READINGS),
      streamServiceCpuUsPerRow: usPerRow(serviceCpu, STREAM_READINGS),
      databaseCpuVsRawCopy: +(copyDatabaseCpu / streamDatabaseCpu).toFixed(3),
      rssBeforeStreamMiB: rssBeforeMiB,
      rssEvery10PercentMiB: stream.rssSamples.join(' '),
    });
  });
}

/** BatchRecordVitals of 5,000 readings per call, closed loop. */
async function ingestBatch(environment: BenchEnvironment, settings: RunSettings): Promise<ScenarioReport[]> {
  const setup = await ingestionSetup(environment);
  // A batch is 5,000 readings: a handful in flight already saturates two cores.
  const concurrency = Math.min(settings.concurrency, 4);
  const requests = setup.messages.map((message) => vitalsV1.BatchRecordVitalsRequest.encode({ readings: message.readings, requestId: '' }).finish());
  return withVitalsService(environment, async (service) => {
    const caller = unaryCaller<Uint8Array, Uint8Array>(
      service.address,
      '/clinical.vitals.v1.VitalsService/BatchRecordVitals',
      (bytes) => bytes,
      (bytes) => bytes,
      setup.token,
    );
    try {
      const calls = await runLoad({
        ...settings,
        concurrency,
        call: (index) => caller.call(requests[index % requests.length]!).then(() => undefined),
      });
      const measured = perRow(calls, MESSAGE_READINGS);
      const copy = await measureRawCopy(environment, setup.rawChunks, {
        totalRows: Number.POSITIVE_INFINITY,
        durationMs: settings.durationMs,
        concurrency,
        chunksPerTransaction: 1,
      });
      const loops = await measureInsertLoops(environment, setup.messages[0]!.readings);
      return ingestionReports('ingest-batch', measured, copy.result, loops, concurrency, service, {
        readingsPerCall: MESSAGE_READINGS,
        callsPerSecond: +calls.rps.toFixed(1),
      });
    } finally {
      caller.close();
    }
  });
}

const RECORD_VITALS_PATH = '/clinical.vitals.v1.VitalsService/RecordVitals';

/**
 * RecordVitals' statement when the request names no request_id, as
 * vitals-svc sends it (vitalsQueries.ts insertReading with its audit context,
 * for a caller of every site): one INSERT ... SELECT that sets the audit
 * context itself (set_config(..., true) in a subquery it reads), inserts only
 * for an active patient and returns the row; one statement, so one implicit
 * transaction, in which vital_signs' audit trigger writes the event.
 */
const INSERT_READING = `
    INSERT INTO vital_signs (vital_id, patient_id, visit_date, measurement_time, systolic_bp, diastolic_bp,
                             heart_rate, temperature, data_batch)
    SELECT $1, patient_id, $2::date, $3::timestamptz,
           $4::int4, $5::int4, $6::int4,
           $7::numeric, $8::jsonb
      FROM patients , (SELECT set_config('app.user_id', $9, true), set_config('app.request_id', $10, true),
                          set_config('app.trace_id', $11, true), set_config('app.reason', $12, true),
                          set_config('app.client_ip', $13, true) OFFSET 0) AS audit_context
     WHERE patient_id = $14 AND status = ANY($15::"text"[]) AND TRUE
    RETURNING vital_id, patient_id, visit_date::text AS visit_date, measurement_time, systolic_bp, diastolic_bp,
              heart_rate, temperature, data_batch, recorded_at`;

/**
 * RecordVitals, one reading per call (no request_id: the service's one-statement
 * path), at the run's concurrency and then an open loop, against its write
 * floor: the same audited INSERT (a fresh v7 id, the reading's values from
 * each request, the audit context, the trigger) through raw pg as vitals-svc's
 * role behind bare grpc-js, the same response encoded; CPU per call of both
 * from /proc. The closed loop's readings per second are also set beside raw
 * binary COPY and the INSERT loops of the same readings (rows per second).
 */
async function ingestUnary(environment: BenchEnvironment, settings: RunSettings): Promise<ScenarioReport[]> {
  const setup = await ingestionSetup(environment);
  const readings = setup.messages.flatMap((message) => message.readings).slice(0, 10_000);
  const requests = readings.map((reading) => vitalsV1.RecordVitalsRequest.encode({ reading, requestId: '' }).finish());
  return withVitalsService(environment, async (service) => {
    const caller = unaryCaller<Uint8Array, vitalsV1.RecordVitalsResponse>(
      service.address,
      RECORD_VITALS_PATH,
      (bytes) => bytes,
      (bytes) => vitalsV1.RecordVitalsResponse.decode(bytes),
      setup.token,
    );
    let sample: vitalsV1.RecordVitalsResponse;
    try {
      sample = await caller.call(requests[0]!);
    } finally {
      caller.close();
    }
    const floor: FloorSpec = {
      path: RECORD_VITALS_PATH,
      response: Buffer.from(vitalsV1.RecordVitalsResponse.encode(sample).finish()).toString('base64'),
      responseType: 'vitalsV1.RecordVitalsResponse',
      requestType: 'vitalsV1.RecordVitalsRequest',
      databaseUrl: environment.database.urlAs('clinical_vitals_svc'),
      statements: [
        {
          text: INSERT_READING,
          expectRows: true,
          values: [
            { uuidV7: true },
            // The visit date the service derives when none is sent: the measurement's UTC date.
            { request: 'reading.measurementTime', match: '^(\\d{4}-\\d{2}-\\d{2})T' },
            { request: 'reading.measurementTime' },
            { request: 'reading.systolicBp' },
            { request: 'reading.diastolicBp' },
            { request: 'reading.heartRate' },
            { request: 'reading.temperatureCelsius' },
            { request: 'reading.deviceData' },
            // The audit context: the gateway's subject, no request id, a trace id, no reason, the peer's address.
            'bench-device-gateway',
            '',
            '0af7651916cd43dd8448eb211c80319c',
            '',
            '127.0.0.1',
            { request: 'reading.patientId' },
            ['SCREENING', 'ENROLLED'],
          ],
        },
      ],
    };
    const reports = await measureAtEachLoad(settings, {}, async (shape) => [
      await compareWithFloor({
        scenario: 'ingest-unary',
        baselineName: 'write floor',
        service,
        floor,
        authorization: `Bearer ${setup.token}`,
        serviceRequests: requests,
        shape,
      }),
    ]);
    // The closed loop's readings per second beside the bulk and loop baselines (rows per second).
    const closedLoop = reports[0]!.measured;
    const copy = await measureRawCopy(environment, setup.rawChunks, {
      totalRows: 200_000,
      durationMs: settings.durationMs,
      concurrency: 1,
      chunksPerTransaction: Number.POSITIVE_INFINITY,
    });
    const loops = await measureInsertLoops(environment, readings);
    return [...reports, ...ingestionReports('ingest-unary', closedLoop, copy.result, loops, settings.concurrency, service, {})];
  });
}

// ---------------------------------------------------------------------------
// ListVitals over a large table
// ---------------------------------------------------------------------------

const LIST_PATIENTS = 1_000;
const READINGS_PER_DAY = 96; // one every 15 minutes
const HISTORY_END = Date.UTC(2025, 0, 1);

/**
 * Grows vital_signs to `targetRows` rows in set-based SQL: LIST_PATIENTS
 * patients, a reading every 15 minutes going back in time, interleaved across
 * patients as a live system writes them (so one patient's day is spread over
 * many heap pages). Seeding skips triggers and FK checks (replica mode, a
 * throwaway database): it is setup, not what is measured.
 */
async function growReadings(databaseUrl: string, patients: readonly string[], fromRows: number, targetRows: number): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query("SET session_replication_role = 'replica'");
    const perStatement = 200; // time steps per statement: 200,000 rows
    for (let step = fromRows / patients.length; step < targetRows / patients.length; step += perStatement) {
      const last = Math.min(step + perStatement, targetRows / patients.length) - 1;
      await client.query(
        `INSERT INTO vital_signs (patient_id, visit_date, measurement_time, systolic_bp, diastolic_bp, heart_rate, temperature)
         SELECT p, (t AT TIME ZONE 'UTC')::date, t, 100 + (s % 60), 60 + (s % 30), 50 + (s % 80), 36.0 + (s % 20) / 10.0
           FROM generate_series($2::int, $3::int) AS s,
                LATERAL (SELECT to_timestamp($4::float8 / 1000) - s * interval '15 minutes' AS t) AS times,
                unnest($1::uuid[]) AS p
          ORDER BY s, p`,
        [patients, step, last, HISTORY_END],
      );
    }
    await client.query('VACUUM ANALYZE vital_signs');
  } finally {
    await client.end();
  }
}

const LIST_VITALS_PATH = '/clinical.vitals.v1.VitalsService/ListVitals';
const LIST_PAGE_SIZE = 100;
/** Distinct ListVitals requests a load process sends in turn (patients and days scrambled). */
const LIST_REQUESTS = 4_096;

/**
 * ListVitals' statement for a first page, as vitals-svc sends it
 * (vitalsQueries.ts selectVitalsPage, for a caller with sites and a range
 * with both ends): one keyset page over vital_signs and, by inheritance, its
 * child vital_signs_bulk, with the patient's visibility checked in the same
 * statement, one row more than the page to tell whether another follows.
 */
const SELECT_VITALS_PAGE = `
    SELECT vital_id, patient_id, visit_date::text AS visit_date, measurement_time, systolic_bp, diastolic_bp,
           heart_rate, temperature, data_batch, recorded_at,
           to_char(measurement_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS cursor_time
      FROM vital_signs
     WHERE patient_id = $1 AND EXISTS (SELECT 1 FROM patients WHERE patient_id = $2 AND site_id = ANY($3::"text"[]))
       AND measurement_time >= $4::timestamptz AND measurement_time < $5::timestamptz
     ORDER BY measurement_time DESC, vital_id DESC
     LIMIT $6`;

/**
 * ListVitals of one random patient's random day (96 readings, one page), at
 * each load (one caller included), against its database-read floor: the same
 * SELECT for the same patient and day (taken from each request) through raw
 * pg as vitals-svc's role, the same page encoded on every call; CPU per call
 * of both from /proc.
 */
async function measureListWindow(
  environment: BenchEnvironment,
  settings: RunSettings,
  patients: readonly string[],
  days: number,
  label: string,
  ratePerSecond?: number,
): Promise<ScenarioReport[]> {
  const token = await environment.token({ roles: ['monitor'], sites: SITES });
  const request = (index: number): vitalsV1.ListVitalsRequest => {
    // A cheap deterministic scramble, so consecutive calls hit different patients and days.
    const mixed = (index * 2_654_435_761) >>> 0;
    const day = 1 + (mixed % (days - 1));
    const end = HISTORY_END - (day - 1) * 86_400_000;
    return { patientId: patients[(mixed >>> 8) % patients.length]!, startTime: new Date(end - 86_400_000), endTime: new Date(end), pageSize: LIST_PAGE_SIZE, pageToken: '' };
  };
  const requests = Array.from({ length: LIST_REQUESTS }, (_, index) => vitalsV1.ListVitalsRequest.encode(request(index)).finish());
  return withVitalsService(environment, async (service) => {
    const caller = unaryCaller(
      service.address,
      LIST_VITALS_PATH,
      (value: vitalsV1.ListVitalsRequest) => vitalsV1.ListVitalsRequest.encode(value).finish(),
      (bytes) => vitalsV1.ListVitalsResponse.decode(bytes),
      token,
    );
    let sample: vitalsV1.ListVitalsResponse;
    try {
      sample = await caller.call(request(0));
    } finally {
      caller.close();
    }
    if (sample.readings.length !== READINGS_PER_DAY) {
      throw new Error(`a day holds ${sample.readings.length} readings, expected ${READINGS_PER_DAY}`);
    }
    const floor: FloorSpec = {
      path: LIST_VITALS_PATH,
      response: Buffer.from(vitalsV1.ListVitalsResponse.encode(sample).finish()).toString('base64'),
      responseType: 'vitalsV1.ListVitalsResponse',
      requestType: 'vitalsV1.ListVitalsRequest',
      databaseUrl: environment.database.urlAs('clinical_vitals_svc'),
      statements: [
        {
          text: SELECT_VITALS_PAGE,
          expectRows: true,
          values: [{ request: 'patientId' }, { request: 'patientId' }, SITES, { request: 'startTime' }, { request: 'endTime' }, LIST_PAGE_SIZE + 1],
        },
      ],
    };
    return measureAtEachLoad(settings, { oneCaller: true, ratePerSecond }, async (shape) => [
      await compareWithFloor({
        scenario: `list-vitals-window ${label}`,
        baselineName: 'database-read floor',
        service,
        floor,
        authorization: `Bearer ${token}`,
        serviceRequests: requests,
        shape,
        extra: { tableRows: label, readingsPerCall: READINGS_PER_DAY },
      }),
    ]);
  });
}

/** ListVitals at 1M rows; with `withTenMillion`, then grown to 10M rows and measured again in the same run. */
async function listVitalsWindow(environment: BenchEnvironment, settings: RunSettings, withTenMillion: boolean): Promise<ScenarioReport[]> {
  const patients = await seedPatients(environment.database.url, LIST_PATIENTS);
  const million = 1_000_000;
  await growReadings(environment.database.url, patients, 0, million);
  const reports = await measureListWindow(environment, settings, patients, million / LIST_PATIENTS / READINGS_PER_DAY, '1M');
  if (withTenMillion) {
    await growReadings(environment.database.url, patients, million, 10 * million);
    // The open loop at 10M runs at 1M's rate, so that each load compares with its twin.
    const openLoopRate = reports.at(-1)!.ratePerSecond;
    const large = await measureListWindow(environment, settings, patients, (10 * million) / LIST_PATIENTS / READINGS_PER_DAY, '10M', openLoopRate);
    large.forEach((atTen, index) => {
      const atOne = reports[index]!;
      atTen.extra!.p99VsOneMillion = +(atTen.measured.p99Ms / atOne.measured.p99Ms).toFixed(2);
      atTen.extra!.p50VsOneMillion = +(atTen.measured.p50Ms / atOne.measured.p50Ms).toFixed(2);
    });
    reports.push(...large);
  }
  return reports;
}

/** The vitals-svc benchmarks, by name. The 10M-row table takes minutes to build: it has its own name. */
export const vitalsScenarios: Record<string, Scenario> = {
  'ingest-stream': ingestStream,
  'ingest-batch': ingestBatch,
  'ingest-unary': ingestUnary,
  'list-vitals-window': (environment, settings) => listVitalsWindow(environment, settings, false),
  'list-vitals-window-10m': (environment, settings) => listVitalsWindow(environment, settings, true),
};
