import { migrate } from '@clinical/db';
import {
  createTemplateDatabase,
  createTestDatabase,
  eventually,
  resolveTestServices,
  startPostgresCluster,
  startRedisServer,
  type PostgresCluster,
  type RedisServer,
  type TestDatabase,
  type TestServices,
} from '@clinical/testing';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runCommand, type CommandRun } from './devStack.js';

/**
 * `npm run ops:report` as an operator runs it, a real process with
 * DATABASE_URL and REDIS_URL, against a populated database (a clone of the
 * migrated template: patients, vitals and documents inserted as the owner,
 * some deleted, analysed, the view refreshed and its refresh logged) while a
 * session sits idle in a transaction and another waits for a row lock a
 * third holds; and against a cluster of the test's own that preloads
 * pg_stat_statements. Literal values the sessions sent never appear in the
 * report.
 */
const SECTIONS = [
  'PostgreSQL',
  'Slow queries',
  'Table and index sizes',
  'Bloat (dead tuples)',
  'Unused indexes',
  'Cache hit ratios',
  'Long transactions',
  'Locks: blocked and blocking',
  'Replication',
  'Materialized view age (analytics)',
  'Audit chain backlog',
  'Redis',
];
/** Sent by the sessions as literals: the report must never print them. */
const SECRET = 'OPS-SECRET-LITERAL-7f3a';

let services: TestServices;
let database: TestDatabase;
let redis: RedisServer;
let cluster: PostgresCluster | undefined;
const clients: pg.Client[] = [];

async function connect(url: string, applicationName = 'ops-report-test'): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
  client.on('error', () => {
    // Ended by the test (or the database dropped under it).
  });
  await client.connect();
  clients.push(client);
  return client;
}

/** `npm run -s ops:report -- <args>` with these settings: exit code and output. */
function opsReport(env: { DATABASE_URL: string; REDIS_URL: string }, args: readonly string[] = []): Promise<CommandRun> {
  return runCommand('npm', ['run', '-s', 'ops:report', '--', ...args], { ...process.env, ...env });
}

/** The text of one section: from its header to the next. */
function sectionOf(output: string, title: string): string {
  const start = output.indexOf(`== ${title} ==\n`);
  expect(start, `section ${title}`).toBeGreaterThanOrEqual(0);
  const next = output.indexOf('\n== ', start + 1);
  return output.slice(start, next < 0 ? undefined : next);
}

/** The line of `text` whose first cell is `first`. */
function rowStarting(text: string, first: string | number): string | undefined {
  return text.split('\n').find((line) => line.trim().split(/\s{2,}/)[0] === String(first));
}

/** '712.7 ms' or '1.23 s', as the report prints times, in milliseconds. */
function milliseconds(text: string): number {
  const [value, unit] = text.split(' ');
  return Number(value) * (unit === 's' ? 1000 : 1);
}

/** Inserts patients, vitals and documents, deletes some readings, analyses, refreshes the view and logs the refresh. */
async function populate(owner: pg.Client): Promise<void> {
  await owner.query(`
    INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date, treatment_arm, demographics)
    SELECT 'OPS-' || g, 'SITE-OPS-' || (g % 3), 'OPS001', date '2024-01-01' + g % 100, 'ARM-' || (g % 2),
           jsonb_build_object('birthYear', 1950 + g % 40)
      FROM generate_series(1, 300) AS g`);
  await owner.query(`
    INSERT INTO vital_signs (patient_id, measurement_time, systolic_bp, diastolic_bp, heart_rate)
    SELECT p.patient_id, now() - make_interval(hours => h), 110 + h % 30, 70 + h % 15, 60 + h * 3
      FROM patients AS p, generate_series(1, 10) AS h`);
  await owner.query(`
    INSERT INTO documents (patient_id, document_type, title, content)
    SELECT patient_id, 'lab_report', 'Lab report', jsonb_build_object('panel', 'CBC') FROM patients ORDER BY subject_number LIMIT 100`);
  // Dead tuples for the bloat section: 3 of every 10 readings.
  await owner.query('DELETE FROM vital_signs WHERE heart_rate < 70');
  // This session's counts reach the statistics before ANALYZE sets live and dead rows (else they would be added on top).
  await owner.query('SELECT pg_stat_force_next_flush()');
  await owner.query('ANALYZE');
  await owner.query('REFRESH MATERIALIZED VIEW patient_analytics');
  await owner.query(`
    INSERT INTO analytics_refreshes (status, trigger, started_at, finished_at, row_count, replica)
    SELECT 'SUCCEEDED', 'REQUESTED', now() - interval '90 seconds', now() - interval '89 seconds', count(*), 'ops-report-test'
      FROM patient_analytics`);
  await owner.query('SELECT pg_stat_force_next_flush()');
}

beforeAll(async () => {
  services = await resolveTestServices();
  const template = await createTemplateDatabase(services.postgresUrl, migrate);
  database = await createTestDatabase(services.postgresUrl, template);
  redis = await startRedisServer();
  // A known hit rate: 3 hits, 1 miss.
  const redisClient = new Redis(redis.url);
  await redisClient.set('ops-report-test', '1');
  for (let i = 0; i < 3; i += 1) {
    await redisClient.get('ops-report-test');
  }
  await redisClient.get('ops-report-test-missing');
  redisClient.disconnect();
}, 180_000);

afterAll(async () => {
  for (const client of clients) {
    await client.end().catch(() => {});
  }
  await database?.drop();
  await redis?.remove();
  await cluster?.remove();
  await services?.stop();
}, 120_000);

describe('npm run ops:report', () => {
  it('reports a populated database with a long transaction and a blocked lock, printing no literal', async () => {
    const owner = await connect(database.url);
    await populate(owner);
    const monitor = await connect(database.url);
    // The statistics of the deletes are in once pg_stat_user_tables counts them.
    await eventually(async () => {
      const { rows } = await monitor.query<{ n_dead_tup: string }>("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'vital_signs'");
      return Number(rows[0]?.n_dead_tup) > 0 ? true : undefined;
    }, 30_000, 'dead tuples counted');
    const { rows: facts } = await owner.query<{ pending: string; view_rows: string; extension: boolean }>(`
      SELECT (SELECT count(*) FROM audit_chain_pending) AS pending, (SELECT count(*) FROM patient_analytics) AS view_rows,
             EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS extension`);

    // A session idle in its transaction, its last statement carrying a literal.
    const idle = await connect(database.url, 'ops-test-idle');
    await idle.query('BEGIN');
    await idle.query(`SELECT count(*) FROM patients WHERE subject_number <> '${SECRET}'`);
    // One holds a row lock, another waits for it.
    const holder = await connect(database.url, 'ops-test-holder');
    await holder.query('BEGIN');
    await holder.query(`SELECT patient_id FROM patients WHERE subject_number = 'OPS-1' AND treatment_arm <> '${SECRET}' FOR UPDATE`);
    const waiter = await connect(database.url, 'ops-test-waiter');
    const waiting = waiter.query(`UPDATE patients SET treatment_arm = '${SECRET}' WHERE subject_number = 'OPS-1'`).catch((error: Error) => error);
    const pidOf = async (client: pg.Client) => (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const [idlePid, holderPid] = [await pidOf(idle), await pidOf(holder)];
    const waiterPid = (waiter as unknown as { processID: number }).processID;
    await eventually(async () => {
      const { rows } = await monitor.query<{ waiting: boolean; old: boolean }>(
        `SELECT (SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1) AS waiting,
                (SELECT now() - xact_start > interval '1 second' FROM pg_stat_activity WHERE pid = $2) AS old`,
        [waiterPid, idlePid],
      );
      return rows[0]?.waiting && rows[0].old ? true : undefined;
    }, 30_000, 'the waiter to wait on the lock, and the idle transaction to be over a second old');

    const { code, stdout, stderr } = await opsReport({ DATABASE_URL: database.url, REDIS_URL: redis.url }, ['--long-after', '1']);
    expect(code, stderr).toBe(0);
    for (const title of SECTIONS) {
      expect(stdout).toContain(`== ${title} ==\n`);
    }
    expect(stdout).not.toContain(SECRET);
    expect(stdout).not.toContain('OPS-1');

    expect(sectionOf(stdout, 'PostgreSQL')).toMatch(/server:\s+PostgreSQL 15\.\d+.*, primary/);
    const slow = sectionOf(stdout, 'Slow queries');
    if (!facts[0]!.extension) {
      expect(slow).toMatch(/pg_stat_statements:\s+not installed/);
      expect(slow).toContain("shared_preload_libraries = 'pg_stat_statements'");
      expect(slow).toContain('restart');
      expect(slow).toContain('CREATE EXTENSION pg_stat_statements;');
    }

    const sizes = sectionOf(stdout, 'Table and index sizes');
    for (const table of ['patients', 'vital_signs', 'documents', 'patient_analytics']) {
      expect(rowStarting(sizes, table), table).toMatch(new RegExp(`^\\s+${table}\\s+(table|matview)\\s+\\d+(\\.\\d)? (B|KiB|MiB)\\s`));
    }
    expect(rowStarting(sizes, 'patients')).toMatch(/\s300$/);
    expect(rowStarting(sizes, 'patients_pkey')).toMatch(/^\s+patients_pkey\s+patients\s+primary\s+\d/);

    const bloat = sectionOf(stdout, 'Bloat (dead tuples)');
    expect(bloat).toContain('n_dead_tup / (n_live_tup + n_dead_tup) from pg_stat_user_tables');
    const vitals = rowStarting(bloat, 'vital_signs')!.trim().split(/\s{2,}/);
    expect(Number(vitals[2]!.replace(/,/g, ''))).toBeGreaterThan(0);
    expect(vitals[3]).toMatch(/^\d+\.\d%$/);

    const unused = sectionOf(stdout, 'Unused indexes');
    expect(rowStarting(unused, 'patients_medical_history_gin')).toMatch(/patients\s+gin\s+\d/);
    expect(rowStarting(unused, 'patients_pkey')).toBeUndefined();
    expect(rowStarting(unused, 'patients_subject_number_key')).toBeUndefined();

    const cache = sectionOf(stdout, 'Cache hit ratios');
    expect(rowStarting(cache, 'heap (tables)')).toMatch(/\d+\.\d%$/);
    expect(rowStarting(cache, 'index')).toMatch(/\d+\.\d%$/);
    expect(rowStarting(cache, 'database (all)')).toMatch(/\d+\.\d%$/);

    const long = sectionOf(stdout, 'Long transactions');
    expect(rowStarting(long, idlePid)).toMatch(/idle in transaction\s.*\sSELECT\s.*ops-test-idle/);
    expect(rowStarting(long, holderPid)).toMatch(/idle in transaction\s.*ops-test-holder/);

    const locks = sectionOf(stdout, 'Locks: blocked and blocking');
    const blocked = locks.slice(locks.indexOf('blocked sessions\n'), locks.indexOf('blocking sessions\n'));
    expect(rowStarting(blocked, waiterPid)).toMatch(new RegExp(`^\\s+${waiterPid}\\s+${holderPid}\\s+.*Lock:transactionid\\s+transactionid ShareLock\\s+patients\\s+UPDATE\\s+.*ops-test-waiter`));
    const blocking = locks.slice(locks.indexOf('blocking sessions\n'));
    expect(rowStarting(blocking, holderPid)).toMatch(new RegExp(`^\\s+${holderPid}\\s+${waiterPid}\\s+idle in transaction\\s.*ops-test-holder`));

    expect(sectionOf(stdout, 'Replication')).toMatch(/replicas:\s+no replicas/);

    const view = sectionOf(stdout, 'Materialized view age (analytics)');
    expect(view).toMatch(/view:\s+patient_analytics, populated/);
    expect(view).toMatch(new RegExp(`view age:\\s+\\d+m \\d\\ds \\(as of \\S+: refresh #\\d+, REQUESTED, ${facts[0]!.view_rows} rows, took 1\\.0 s, by ops-report-test\\)`));
    expect(view).toMatch(/failed since:\s+none/);

    const audit = sectionOf(stdout, 'Audit chain backlog');
    expect(audit).toMatch(new RegExp(`pending events:\\s+${Number(facts[0]!.pending).toLocaleString('en-US')}\\n`));

    const redisSection = sectionOf(stdout, 'Redis');
    expect(redisSection).toMatch(/server:\s+Redis 7\.\d+\.\d+ at localhost:\d+, master/);
    expect(redisSection).toMatch(/used memory:\s+\S+ \(peak/);
    expect(redisSection).toMatch(/maxmemory:\s+no limit/);
    expect(redisSection).toMatch(/fragmentation ratio:\s+\d/);
    expect(redisSection).toMatch(/hit rate:\s+75\.0% \(keyspace_hits 3, keyspace_misses 1\)/);
    expect(redisSection).toMatch(/connected clients:\s+1 /);

    // The same, for machines.
    const json = await opsReport({ DATABASE_URL: database.url, REDIS_URL: redis.url }, ['--json', '--long-after', '1']);
    expect(json.code, json.stderr).toBe(0);
    expect(json.stdout).not.toContain(SECRET);
    const report = JSON.parse(json.stdout) as { sections: { title: string; status: string; facts: Record<string, unknown>; tables: { rows: Record<string, unknown>[] }[] }[] };
    expect(report.sections.map((s) => s.title)).toEqual(SECTIONS);
    expect(report.sections.filter((s) => s.status !== 'ok')).toEqual([]);
    const lockRows = report.sections.find((s) => s.title === 'Locks: blocked and blocking')!.tables[0]!.rows;
    expect(lockRows.find((row) => row.pid === waiterPid)?.blocked_by).toEqual([holderPid]);

    await holder.query('ROLLBACK');
    expect(await waiting).not.toBeInstanceOf(Error);
    await idle.query('ROLLBACK');
  }, 180_000);

  it('fails soft: a section it may not read, and a Redis that is not there, say why; the rest is reported', async () => {
    const { code, stdout, stderr } = await opsReport({
      DATABASE_URL: database.urlAs('clinical_patient_svc'),
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    });
    expect(code, stderr).toBe(0);
    for (const title of SECTIONS) {
      expect(stdout).toContain(`== ${title} ==\n`);
    }
    const slow = sectionOf(stdout, 'Slow queries');
    expect(slow).toMatch(/shared_preload_libraries:\s+not readable \(.*pg_read_all_settings/);
    expect(slow).toMatch(/pg_stat_statements:\s+not installed/);
    expect(sectionOf(stdout, 'Materialized view age (analytics)')).toMatch(/unavailable: permission denied for table analytics_refreshes \(SQLSTATE 42501\)/);
    expect(sectionOf(stdout, 'Redis')).toMatch(/unavailable: 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    expect(rowStarting(sectionOf(stdout, 'Table and index sizes'), 'patients')).toMatch(/^\s+patients\s+table\s/);
    expect(sectionOf(stdout, 'Replication')).toMatch(/no replicas/);
  }, 120_000);

  it('lists slow queries from pg_stat_statements, normalized, when the server preloads it', async () => {
    cluster = await startPostgresCluster({ settings: { shared_preload_libraries: "'pg_stat_statements'" } });
    const admin = await connect(cluster.url('postgres'));
    await admin.query('CREATE DATABASE clinical');
    const url = cluster.url('clinical');
    await migrate({ databaseUrl: url });
    const owner = await connect(url);
    await owner.query('CREATE EXTENSION pg_stat_statements');
    await populate(owner);
    const app = await connect(url, 'ops-test-app');
    for (let i = 0; i < 5; i += 1) {
      await app.query(`SELECT count(*) FROM patients WHERE subject_number = '${SECRET}-${i}'`);
    }
    await app.query(`/* ${SECRET} in a comment */ SELECT count(*) FROM vital_signs WHERE heart_rate > 55`);
    await app.query('SELECT count(*) FROM generate_series(1, 500000) AS g');
    // A utility statement: PostgreSQL 15 keeps its text as sent.
    await app.query(`COMMENT ON TABLE mcp_context IS '${SECRET}'`);

    // Enough rows to hold every statement recorded: the migrations alone make some hundreds, and
    // each new one would otherwise push the quick queries below out of a shorter ranking.
    const { code, stdout, stderr } = await opsReport({ DATABASE_URL: url, REDIS_URL: redis.url }, ['--top', '2000']);
    expect(code, stderr).toBe(0);
    expect(stdout).not.toContain(SECRET);
    const slow = sectionOf(stdout, 'Slow queries');
    expect(slow).toMatch(/pg_stat_statements:\s+installed \(1\.\d+\) in schema public/);
    expect(slow).not.toContain('To enable pg_stat_statements');
    const byTotal = slow.slice(slow.indexOf('top 2000 by total time'), slow.indexOf('top 2000 by mean time'));
    const byMean = slow.slice(slow.indexOf('top 2000 by mean time'));
    // Each ranking is in its order (the total column is the 2nd, the mean the 3rd).
    for (const [table, column] of [[byTotal, 1], [byMean, 2]] as const) {
      const times = table.split('\n').slice(3).filter((line) => /^\s+\d/.test(line)).map((line) => milliseconds(line.trim().split(/\s{2,}/)[column]!));
      expect(times.length).toBeGreaterThan(10);
      expect(times).toEqual([...times].sort((a, b) => b - a));
    }
    const generateSeries = 'SELECT count(*) FROM generate_series($1, $2) AS g';
    expect(byMean).toContain(generateSeries);
    expect(byTotal).toContain(generateSeries);
    expect(byTotal).toMatch(/\s5\s.*SELECT count\(\*\) FROM patients WHERE subject_number = \$1/);
    expect(byTotal).toContain('SELECT count(*) FROM vital_signs WHERE heart_rate > $1');
    expect(byTotal).toContain('(COMMENT: utility statement, text not shown)');
    expect(sectionOf(stdout, 'Replication')).toMatch(/no replicas/);
  }, 180_000);
});
