import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { documentV1, patientV1, vitalsV1 } from '@clinical/contracts';
import { createChannel, createClient, Metadata, type Channel } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevStack, exitOf, runCommand, type CommandRun, type DevStack, type StartRun } from './devStack.js';

/**
 * `npm run seed` as a user runs it against `npm start`: a real process whose
 * standard error is a pipe (plain progress lines, no bar), checked by its
 * report, through the API and in the database; then run again (nothing is
 * made twice, the report says it was there) and with more patients (only the
 * new ones are made).
 */
let stack: DevStack;
let run: StartRun;
const channels: Channel[] = [];

beforeAll(async () => {
  stack = await createDevStack();
  run = stack.npmStart();
  await stack.untilServing(run);
}, 600_000);

afterAll(async () => {
  for (const channel of channels) {
    channel.close();
  }
  if (run?.child.pid && run.child.exitCode === null) {
    process.kill(-run.child.pid, 'SIGINT');
    await exitOf(run.child);
  }
  stack?.remove();
}, 120_000);

function seed(args: readonly string[]): Promise<CommandRun> {
  return runCommand('npm', ['run', '-s', 'seed', '--', ...args], stack.env);
}

/** The report's numbers. */
function reportOf(stdout: string) {
  const number = (text: string) => Number(text.replaceAll(',', ''));
  const patients = /patients: +([\d,]+) created, ([\d,]+) already there/.exec(stdout);
  const documents = /documents: +([\d,]+) created, ([\d,]+) already there/.exec(stdout);
  const readings = /readings: +([\d,]+) recorded in (\d+) streams?, ([\d,]+) already there/.exec(stdout);
  expect(patients && documents && readings, stdout).toBeTruthy();
  return {
    patientsCreated: number(patients![1]!),
    patientsExisting: number(patients![2]!),
    documentsCreated: number(documents![1]!),
    documentsExisting: number(documents![2]!),
    readingsRecorded: number(readings![1]!),
    streams: number(readings![2]!),
    readingsExisting: number(readings![3]!),
  };
}

/** What the API shows a coordinator of both sites: per site, each demo patient's document and reading counts. */
async function throughTheApi(token: string): Promise<Record<string, Record<string, { documents: number; readings: number }>>> {
  const metadata = Metadata({ authorization: `Bearer ${token}` });
  const on = (port: number) => {
    const channel = createChannel(`127.0.0.1:${port}`);
    channels.push(channel);
    return channel;
  };
  const [patientPort, vitalsPort] = stack.ports.services as [number, number];
  const patients = createClient(patientV1.PatientServiceDefinition, on(patientPort), { '*': { metadata } });
  const documents = createClient(documentV1.DocumentServiceDefinition, on(patientPort), { '*': { metadata } });
  const vitals = createClient(vitalsV1.VitalsServiceDefinition, on(vitalsPort), { '*': { metadata } });
  const sites: Record<string, Record<string, { documents: number; readings: number }>> = {};
  for (const siteId of ['SITE-001', 'SITE-002']) {
    sites[siteId] = {};
    const { patients: found, nextPageToken } = await patients.listPatients({ siteId, pageSize: 500 });
    expect(nextPageToken).toBe('');
    for (const patient of found) {
      const [{ documents: list }, summary] = await Promise.all([
        documents.listDocuments({ patientId: patient.patientId, pageSize: 200 }),
        vitals.summarizeVitals({ patientId: patient.patientId }),
      ]);
      sites[siteId][patient.subjectNumber] = { documents: list.length, readings: Number(summary.readingCount) };
    }
  }
  return sites;
}

/** The same, counted in the database: every demo row, whoever could see it. */
async function inTheDatabase(): Promise<{ patients: number; documents: number; readings: number }> {
  const { DATABASE_URL } = JSON.parse(readFileSync(join(stack.dataDir, 'dev-env.json'), 'utf8')) as { DATABASE_URL: string };
  const client = new pg.Client({ connectionString: DATABASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ patients: string; documents: string; readings: string }>(`
      SELECT (SELECT count(*) FROM patients WHERE subject_number LIKE 'DEMO-%') AS patients,
             (SELECT count(*) FROM documents d JOIN patients p USING (patient_id) WHERE p.subject_number LIKE 'DEMO-%') AS documents,
             (SELECT count(*) FROM vital_signs v JOIN patients p USING (patient_id) WHERE p.subject_number LIKE 'DEMO-%') AS readings`);
    return { patients: Number(rows[0]!.patients), documents: Number(rows[0]!.documents), readings: Number(rows[0]!.readings) };
  } finally {
    await client.end();
  }
}

const expectedSite = (site: number, patients: number, readings: number) =>
  Object.fromEntries(
    Array.from({ length: patients }, (_, index) => [
      `DEMO-S${String(site).padStart(3, '0')}-${String(index + 1).padStart(4, '0')}`,
      { documents: 1, readings },
    ]),
  );

describe('npm run seed', () => {
  it('makes sites, patients, documents and readings through the API, and a re-run makes nothing twice', async () => {
    const args = ['--sites', '2', '--patients', '20', '--vitals-per-patient', '50'];
    const first = await seed(args);
    expect(first.code, first.stderr).toBe(0);
    expect(reportOf(first.stdout)).toEqual({
      patientsCreated: 20,
      patientsExisting: 0,
      documentsCreated: 20,
      documentsExisting: 0,
      readingsRecorded: 1_000,
      streams: 2,
      readingsExisting: 0,
    });
    expect(first.stdout).toMatch(/2 sites \(SITE-001 to SITE-002\)/);
    // Not a terminal: plain lines, no bar redrawn in place, ending at 100%.
    const progressLines = first.stderr.trim().split('\n');
    expect(first.stderr).not.toContain('\r');
    expect(first.stderr).not.toContain('\u001b[');
    expect(progressLines.every((line) => line.startsWith('seed: ')), first.stderr).toBe(true);
    expect(progressLines.at(-1)).toMatch(/readings 1,000\/1,000 \(100%\).*patients 20\/20 \| documents 20\/20/);

    const token = await stack.npmRun('token', ['--roles', 'coordinator', '--sites', 'SITE-001,SITE-002', '--sub', 'seed-checker']);
    const seeded = { 'SITE-001': expectedSite(1, 10, 50), 'SITE-002': expectedSite(2, 10, 50) };
    expect(await throughTheApi(token)).toEqual(seeded);
    expect(await inTheDatabase()).toEqual({ patients: 20, documents: 20, readings: 1_000 });

    const again = await seed(args);
    expect(again.code, again.stderr).toBe(0);
    expect(reportOf(again.stdout)).toEqual({
      patientsCreated: 0,
      patientsExisting: 20,
      documentsCreated: 0,
      documentsExisting: 20,
      readingsRecorded: 0,
      streams: 0,
      readingsExisting: 1_000,
    });
    expect(await throughTheApi(token)).toEqual(seeded);
    expect(await inTheDatabase()).toEqual({ patients: 20, documents: 20, readings: 1_000 });

    // More patients: only the new ones (two per site) are made.
    const more = await seed(['--sites', '2', '--patients', '24', '--vitals-per-patient', '50']);
    expect(more.code, more.stderr).toBe(0);
    expect(reportOf(more.stdout)).toEqual({
      patientsCreated: 4,
      patientsExisting: 20,
      documentsCreated: 4,
      documentsExisting: 20,
      readingsRecorded: 200,
      streams: 2,
      readingsExisting: 1_000,
    });
    expect(await throughTheApi(token)).toEqual({ 'SITE-001': expectedSite(1, 12, 50), 'SITE-002': expectedSite(2, 12, 50) });
    expect(await inTheDatabase()).toEqual({ patients: 24, documents: 24, readings: 1_200 });
  }, 300_000);
});
