import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditV1, patientV1, vitalsV1 } from '@clinical/contracts';
import { SERVICE_PROCESS_ARGUMENTS } from '@clinical/server-kit';
import { eventually, startPostgresCluster, type PostgresCluster } from '@clinical/testing';
import { ClientError, createChannel, createClient, Metadata, Status, type Channel } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { ROOT } from '../checkout.js';
import { allServing, createDevStack, exitOf, freePort, runCommand, type CommandRun, type DevStack, type StartRun } from './devStack.js';

/**
 * `npm run db:backup` and `npm run db:restore` as an operator runs them,
 * against the stack `npm start` runs: a database populated through the
 * services is backed up while the services keep writing, and restored into a
 * fresh database of the same server and into a freshly initialised cluster
 * (where the services' roles do not exist). The restored copy holds exactly
 * the rows of the backup's snapshot (counted in that very snapshot, exported
 * by the test and handed to db:backup), its audit trail verifies, and the
 * services serve from it.
 */
let stack: DevStack;
let run: StartRun;
let sourceUrl: string;
let jwtSecret: string;
let workDir: string;
let freshCluster: PostgresCluster | undefined;
const services: ChildProcess[] = [];
const channels: Channel[] = [];
const clients: pg.Client[] = [];

beforeAll(async () => {
  // The writers below call far more often than the default per-caller budget allows.
  stack = await createDevStack({ env: { RATE_LIMIT_POINTS: '10000000', LOG_LEVEL: 'warn' } });
  run = stack.npmStart();
  await stack.untilServing(run);
  const settings = JSON.parse(readFileSync(join(stack.dataDir, 'dev-env.json'), 'utf8')) as Record<string, string>;
  sourceUrl = settings.DATABASE_URL as string;
  jwtSecret = settings.JWT_SECRET as string;
  workDir = mkdtempSync(join(tmpdir(), 'backup-restore-'));
}, 600_000);

afterAll(async () => {
  for (const channel of channels) {
    channel.close();
  }
  for (const client of clients) {
    await client.end().catch(() => {});
  }
  for (const child of services) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exitOf(child);
    }
  }
  await freshCluster?.remove();
  if (run?.child.pid && run.child.exitCode === null) {
    process.kill(-run.child.pid, 'SIGINT');
    await exitOf(run.child);
  }
  stack?.remove();
  if (workDir) {
    rmSync(workDir, { recursive: true, force: true });
  }
}, 120_000);

/** `npm run -s <script> -- <args>` as an operator runs it: its exit code and output. */
function npmRun(script: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CommandRun> {
  return runCommand('npm', ['run', '-s', script, '--', ...args], { ...stack.env, ...env });
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  clients.push(client);
  return client;
}

/** Every ordinary table's row count, as `client`'s snapshot sees it. */
async function tableCounts(client: pg.Client): Promise<Record<string, number>> {
  const { rows: tables } = await client.query<{ name: string }>(`
    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
      FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
     ORDER BY 1`);
  const counts: Record<string, number> = {};
  for (const { name } of tables) {
    const { rows } = await client.query<{ count: string }>(`SELECT count(*) FROM ${name}`);
    counts[name] = Number(rows[0]?.count);
  }
  return counts;
}

async function countsOf(url: string): Promise<Record<string, number>> {
  const client = await connect(url);
  try {
    return await tableCounts(client);
  } finally {
    await client.end();
  }
}

async function databasesOf(url: string): Promise<string[]> {
  const client = await connect(withDatabase(url, 'postgres'));
  try {
    const { rows } = await client.query<{ datname: string }>('SELECT datname FROM pg_database ORDER BY 1');
    return rows.map((row) => row.datname);
  } finally {
    await client.end();
  }
}

function clientsOn(ports: { patient: number; vitals: number; audit: number }, token: string) {
  const options = { '*': { metadata: Metadata({ authorization: `Bearer ${token}` }) } };
  const on = (port: number) => {
    const channel = createChannel(`127.0.0.1:${port}`);
    channels.push(channel);
    return channel;
  };
  return {
    patients: createClient(patientV1.PatientServiceDefinition, on(ports.patient), options),
    vitals: createClient(vitalsV1.VitalsServiceDefinition, on(ports.vitals), options),
    audit: createClient(auditV1.AuditServiceDefinition, on(ports.audit), options),
  };
}

function newPatient(): patientV1.Patient {
  return patientV1.Patient.fromPartial({
    subjectNumber: `BK001-${randomUUID().slice(0, 8)}`,
    siteId: 'SITE-BK',
    protocolId: 'BK001',
    enrollmentDate: { year: 2024, month: 3, day: 1 },
    treatmentArm: 'ARM-1',
    demographics: { sex: patientV1.Sex.SEX_FEMALE, birthYear: 1975, race: ['White'], heightCm: 170, weightKg: 64 },
    medicalHistory: { conditions: [], medications: [], allergies: ['latex'] },
  });
}

function reading(patientId: string): vitalsV1.VitalSigns {
  return vitalsV1.VitalSigns.fromPartial({ patientId, measurementTime: new Date(Date.now() - 60_000), systolicBp: 121, diastolicBp: 79, heartRate: 66 });
}

/** A patient with a reading, read back once (an access event): every kind of row the trail chains. */
async function writeOnce(api: ReturnType<typeof clientsOn>): Promise<patientV1.Patient> {
  // No call may hang the writers: one without an answer is aborted and counted as a failure.
  const bounded = () => ({ signal: AbortSignal.timeout(30_000) });
  const { patient } = await api.patients.createPatient({ patient: newPatient() }, bounded());
  await api.vitals.recordVitals({ reading: reading(patient?.patientId as string) }, bounded());
  await api.patients.getPatient({ patientId: patient?.patientId as string }, bounded());
  return patient as patientV1.Patient;
}

/** patient-svc, vitals-svc and audit-svc as `npm start` runs them, on `databaseUrl`, without Redis. */
async function servicesOn(databaseUrl: string): Promise<{ patient: number; vitals: number; audit: number }> {
  const ports = { patient: await freePort(), vitals: await freePort(), audit: await freePort() };
  const output: string[] = [];
  for (const [name, prefix, port] of [
    ['patient-svc', 'PATIENT_SVC', ports.patient],
    ['vitals-svc', 'VITALS_SVC', ports.vitals],
    ['audit-svc', 'AUDIT_SVC', ports.audit],
  ] as const) {
    const child = spawn(process.execPath, [...SERVICE_PROCESS_ARGUMENTS], {
      cwd: join(ROOT, 'apps', name),
      env: { ...stack.env, SERVICE_NAME: name, DATABASE_URL: databaseUrl, STATE_STORE: 'memory', JWT_SECRET: jwtSecret, [`${prefix}_PORT`]: String(port), LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr?.on('data', (chunk: Buffer) => output.push(`${name}: ${chunk.toString()}`));
    services.push(child);
  }
  await eventually(
    async () => {
      const ended = services.find((child) => child.exitCode !== null);
      if (ended) {
        throw new Error(`a service on the restored copy ended:\n${output.join('')}`);
      }
      return (await allServing(Object.values(ports))) ? true : undefined;
    },
    120_000,
    'the services on the restored copy',
  );
  return ports;
}

async function statusOf(call: Promise<unknown>): Promise<Status> {
  return call.then(
    () => Status.OK,
    (error: unknown) => (error instanceof ClientError ? error.code : Status.UNKNOWN),
  );
}

describe('backup and restore', () => {
  it('backs up while the services write, consistently, and restores into a fresh database and a fresh cluster that the services serve from', async () => {
    const token = await stack.npmRun('token', ['--roles', 'coordinator,auditor', '--sites', '*', '--sub', 'backup-operator', '--ttl', '7200']);
    const [patientPort, vitalsPort, auditPort] = stack.ports.services as [number, number, number, number];
    const source = clientsOn({ patient: patientPort, vitals: vitalsPort, audit: auditPort }, token);

    // A populated database: patients with readings, read back (access events), all in the trail.
    const before: patientV1.Patient[] = [];
    for (let i = 0; i < 12; i += 1) {
      before.push(await writeOnce(source));
    }

    // Writers that keep going through both backups.
    let stop = false;
    const writes: { startedAt: number; endedAt: number; patient: patientV1.Patient }[] = [];
    const failures: string[] = [];
    const writers = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const startedAt = Date.now();
        try {
          const patient = await writeOnce(source);
          writes.push({ startedAt, endedAt: Date.now(), patient });
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    });
    // Stopped however the test ends: left running after a failed assertion, the writers would spin on closed channels.
    onTestFinished(async () => {
      stop = true;
      await Promise.all(writers);
    });
    await eventually(async () => (writes.length >= 20 ? true : undefined), 60_000, 'writes under way');

    // The snapshot the backup will read, exported and held open here, and counted in it.
    const holder = await connect(sourceUrl);
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const { rows } = await holder.query<{ snapshot: string }>('SELECT pg_export_snapshot() AS snapshot');
    const snapshot = (rows[0] as { snapshot: string }).snapshot;
    const snapshotTakenAt = Date.now();
    const snapshotCounts = await tableCounts(holder);
    expect(snapshotCounts['public.patients']).toBeGreaterThanOrEqual(before.length);

    const plainFile = join(workDir, 'clinical.backup');
    const backupStartedAt = Date.now();
    const plain = await npmRun('db:backup', [plainFile, '--snapshot', snapshot]);
    const backupEndedAt = Date.now();
    expect(plain.stderr).toBe('');
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain(`snapshot ${snapshot}`);
    await holder.query('COMMIT');

    // An encrypted backup, in a snapshot of its own, still under writes.
    const keyFile = join(workDir, 'backup.key');
    writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
    const encryptedFile = join(workDir, 'clinical.backup.enc');
    const encryptedStartedAt = Date.now();
    const encrypted = await npmRun('db:backup', [encryptedFile, '--key-file', keyFile]);
    const encryptedEndedAt = Date.now();
    expect(encrypted.code, encrypted.stderr).toBe(0);
    expect(encrypted.stdout).toContain('encrypted (AES-256-GCM)');
    // Writes committed while each backup ran: the backups were taken under load.
    const during = (from: number, to: number) => writes.filter((write) => write.endedAt > from && write.startedAt < to).length;
    await eventually(async () => (during(encryptedStartedAt, Date.now()) > 0 ? true : undefined), 60_000, 'a write after the encrypted backup started');
    stop = true;
    await Promise.all(writers);
    expect(failures).toEqual([]);
    expect(during(backupStartedAt, backupEndedAt)).toBeGreaterThan(0);
    expect(during(encryptedStartedAt, encryptedEndedAt)).toBeGreaterThan(0);
    const afterSnapshot = writes.find((write) => write.startedAt > snapshotTakenAt) as (typeof writes)[number];
    expect(afterSnapshot).toBeDefined();
    // The source moved on past the snapshot; the backup must not have.
    const finalCounts = await countsOf(sourceUrl);
    expect(finalCounts['public.patients']).toBeGreaterThan(snapshotCounts['public.patients'] as number);

    // 1. Into a fresh database of the same server (the roles exist there): exactly the snapshot.
    const sameServerUrl = withDatabase(sourceUrl, 'clinical_restored');
    const intoSame = await npmRun('db:restore', [plainFile, '--create'], { DATABASE_URL: sameServerUrl });
    expect(intoSame.code, intoSame.stderr).toBe(0);
    expect(intoSame.stdout).toContain('none created');
    expect(await countsOf(sameServerUrl)).toEqual(snapshotCounts);

    // 2. Into a freshly initialised cluster, where the services' roles do not exist.
    freshCluster = await startPostgresCluster();
    const freshAdmin = await connect(freshCluster.url('postgres'));
    const roleQuery = `SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'clinical\\_%' ORDER BY 1`;
    expect((await freshAdmin.query(roleQuery)).rows).toEqual([]);
    const freshUrl = freshCluster.url('clinical');
    const intoFresh = await npmRun('db:restore', [plainFile, '--create'], { DATABASE_URL: freshUrl });
    expect(intoFresh.code, intoFresh.stderr).toBe(0);
    expect(intoFresh.stdout).toContain('created clinical_analytics_svc, clinical_audit_purger, clinical_audit_svc, clinical_patient_svc, clinical_vitals_svc');
    expect((await freshAdmin.query(roleQuery)).rows).toEqual([
      { rolname: 'clinical_analytics_svc', rolcanlogin: true },
      { rolname: 'clinical_audit_purger', rolcanlogin: false },
      { rolname: 'clinical_audit_svc', rolcanlogin: true },
      { rolname: 'clinical_patient_svc', rolcanlogin: true },
      { rolname: 'clinical_vitals_svc', rolcanlogin: true },
    ]);
    expect(await countsOf(freshUrl)).toEqual(snapshotCounts);
    // Grants and owners came back with the roles: least privilege as the migrations set it.
    const restored = await connect(freshUrl);
    const { rows: privileges } = await restored.query(`
      SELECT has_table_privilege('clinical_patient_svc', 'patients', 'INSERT') AS patient_inserts,
             has_table_privilege('clinical_patient_svc', 'audit_events', 'SELECT') AS patient_reads_trail,
             has_table_privilege('clinical_analytics_svc', 'patients', 'SELECT') AS analytics_reads_patients,
             has_column_privilege('clinical_analytics_svc', 'patients', 'site_id', 'SELECT') AS analytics_reads_site,
             pg_get_userbyid((SELECT relowner FROM pg_class WHERE relname = 'patient_analytics')) AS view_owner,
             pg_get_userbyid((SELECT proowner FROM pg_proc WHERE proname = 'audit_purge_prefix')) AS purge_owner`);
    expect(privileges[0]).toEqual({
      patient_inserts: true,
      patient_reads_trail: false,
      analytics_reads_patients: false,
      analytics_reads_site: true,
      view_owner: 'clinical_analytics_svc',
      purge_owner: 'clinical_audit_purger',
    });

    // 3. The services serve from the restored copy: the token's session came back with it.
    const ports = await servicesOn(freshUrl);
    const copy = clientsOn(ports, token);
    const verified = await copy.audit.verifyAuditTrail({ startSequenceNumber: '0', endSequenceNumber: '0' }, { signal: AbortSignal.timeout(60_000) });
    expect(verified.firstBreak).toBeUndefined();
    expect(verified.intact).toBe(true);
    // Every event of the snapshot is in the chain (those still waiting for the sealer were sealed now).
    expect(Number(verified.checkedCount)).toBeGreaterThanOrEqual(snapshotCounts['public.audit_events'] as number);
    for (const patient of before) {
      const { patient: served } = await copy.patients.getPatient({ patientId: patient.patientId });
      expect(served).toEqual(patient);
    }
    // A patient written after the snapshot is not in the copy.
    expect(await statusOf(copy.patients.getPatient({ patientId: afterSnapshot.patient.patientId }))).toBe(Status.NOT_FOUND);
    // And the copy takes writes, audited and chained like any other.
    await writeOnce(copy);
    const again = await eventually(
      async () => {
        const result = await copy.audit.verifyAuditTrail({ startSequenceNumber: '0', endSequenceNumber: '0' });
        return Number(result.checkedCount) > Number(verified.checkedCount) ? result : undefined;
      },
      60_000,
      'the new writes chained',
    );
    expect(again.intact).toBe(true);

    // 4. The encrypted backup: refused without its key, with another key, or altered, the target left as it was.
    const databasesBefore = await databasesOf(sourceUrl);
    const wrongKey = join(workDir, 'wrong.key');
    writeFileSync(wrongKey, randomBytes(32), { mode: 0o600 });
    const withWrongKey = await npmRun('db:restore', [encryptedFile, '--force', '--key-file', wrongKey], { DATABASE_URL: sameServerUrl });
    expect(withWrongKey.code).not.toBe(0);
    expect(withWrongKey.stderr).toContain('the key file does not match');
    const withoutKey = await npmRun('db:restore', [encryptedFile, '--create'], { DATABASE_URL: withDatabase(sourceUrl, 'clinical_never') });
    expect(withoutKey.code).not.toBe(0);
    expect(withoutKey.stderr).toContain('is encrypted: give the key file');
    const altered = Buffer.from(readFileSync(encryptedFile));
    const middle = Math.floor(altered.length / 2);
    altered.writeUInt8(altered.readUInt8(middle) ^ 0x01, middle);
    const alteredFile = join(workDir, 'altered.backup.enc');
    writeFileSync(alteredFile, altered);
    const withAltered = await npmRun('db:restore', [alteredFile, '--force', '--key-file', keyFile], { DATABASE_URL: sameServerUrl });
    expect(withAltered.code).not.toBe(0);
    expect(withAltered.stderr).toMatch(/damaged or was altered/);
    expect(await databasesOf(sourceUrl)).toEqual(databasesBefore);
    expect(await countsOf(sameServerUrl)).toEqual(snapshotCounts);

    // With the right key: restored, and the restore's own check held (every count as in its snapshot).
    const decryptedUrl = withDatabase(sourceUrl, 'clinical_from_encrypted');
    const withKey = await npmRun('db:restore', [encryptedFile, '--create', '--key-file', keyFile], { DATABASE_URL: decryptedUrl });
    expect(withKey.code, withKey.stderr).toBe(0);
    expect(withKey.stdout).toContain('every count as in the backup');
    const fromEncrypted = await connect(decryptedUrl);
    // Its snapshot is consistent too: every event chained or waiting for the sealer, the chain gap-free up to its head.
    const { rows: chain } = await fromEncrypted.query(`
      SELECT (SELECT count(*) FROM audit_events AS e
               WHERE NOT EXISTS (SELECT 1 FROM audit_chain AS c WHERE c.event_seq = e.event_seq)
                 AND NOT EXISTS (SELECT 1 FROM audit_chain_pending AS p WHERE p.event_seq = e.event_seq))::int AS unaccounted,
             (SELECT count(*) FROM audit_chain)::int AS chained,
             (SELECT coalesce(max(sequence_number), 0) FROM audit_chain)::int AS last_position,
             (SELECT sequence_number FROM audit_chain_head)::int AS head`);
    const consistency = chain[0] as { unaccounted: number; chained: number; last_position: number; head: number };
    expect(consistency.unaccounted).toBe(0);
    expect(consistency.last_position).toBe(consistency.chained);
    expect(consistency.head).toBe(consistency.chained);
    const encryptedCounts = await tableCounts(fromEncrypted);
    // Taken after the first backup and before the writes stopped.
    expect(encryptedCounts['public.patients']).toBeGreaterThan(snapshotCounts['public.patients'] as number);
    expect(encryptedCounts['public.patients']).toBeLessThanOrEqual(finalCounts['public.patients'] as number);
  }, 600_000);
});
