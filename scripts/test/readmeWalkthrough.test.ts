import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../checkout.js';
import { createDevStack, exitOf, runCommand, type DevStack, type StartRun } from './devStack.js';

/**
 * README.md's "Walkthrough with grpcurl", run as written: its shell blocks,
 * in order, in one bash shell in the checkout, against the whole stack as
 * `npm start` runs it. Only the ports change (the harness's stack listens on
 * ports of its own). With no grpcurl on the PATH, scripts/test/grpcurlShim.mjs
 * stands in for it: reflection only, grpcurl's output and exit codes.
 */

const SECTION = '### Walkthrough with grpcurl';
const DEFAULT_PORTS = [50051, 50052, 50053, 50054];
/** Whether grpcurl itself is installed: then the walkthrough runs with it. */
const REAL_GRPCURL = spawnSync('sh', ['-c', 'command -v grpcurl'], { encoding: 'utf8' }).status === 0;

/** The sh blocks of the walkthrough section, in order. */
function walkthroughBlocks(readme: string): string[] {
  const start = readme.indexOf(`\n${SECTION}\n`);
  expect(start, `README.md has no "${SECTION}" section`).toBeGreaterThanOrEqual(0);
  const rest = readme.slice(start + SECTION.length + 2);
  const end = rest.search(/^#{1,3} /m);
  const section = end < 0 ? rest : rest.slice(0, end);
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((match) => match[1]!);
}

interface BlockRun {
  readonly script: string;
  readonly stdout: string;
}

let stack: DevStack;
let run: StartRun;
let binDir: string;
let exitCode: number | null;
let stderr: string;
let blocks: BlockRun[];

beforeAll(async () => {
  binDir = mkdtempSync(join(tmpdir(), 'grpcurl-shim-'));
  if (!REAL_GRPCURL) {
    const shim = join(binDir, 'grpcurl');
    writeFileSync(shim, `#!/bin/sh\nexec '${process.execPath}' '${join(ROOT, 'scripts/test/grpcurlShim.mjs')}' "$@"\n`);
    chmodSync(shim, 0o755);
  }
  stack = await createDevStack();
  run = stack.npmStart();
  await stack.untilServing(run);

  const scripts = walkthroughBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8')).map((script) =>
    DEFAULT_PORTS.reduce((text, port, index) => text.replaceAll(`localhost:${port}`, `127.0.0.1:${stack.ports.services[index]}`), script),
  );
  const marker = (index: number) => `@@walkthrough-block-${index}@@`;
  const program = ['set -eo pipefail', ...scripts.flatMap((script, index) => [`echo '${marker(index)}'`, script])].join('\n');
  const walked = await runCommand('bash', ['-c', program], { ...stack.env, PATH: `${binDir}${delimiter}${stack.env.PATH ?? ''}` });
  const { stdout } = walked;
  ({ stderr, code: exitCode } = walked);
  blocks = scripts.map((script, index) => {
    const from = stdout.indexOf(`${marker(index)}\n`);
    const to = stdout.indexOf(`${marker(index + 1)}\n`);
    return { script, stdout: from < 0 ? '' : stdout.slice(from + marker(index).length + 1, to < 0 ? undefined : to) };
  });
}, 600_000);

afterAll(async () => {
  if (run?.child.pid && run.child.exitCode === null) {
    process.kill(-run.child.pid, 'SIGINT');
    await exitOf(run.child);
  }
  stack?.remove();
  if (binDir) {
    rmSync(binDir, { recursive: true, force: true });
  }
}, 120_000);

/** The walkthrough block whose script contains `text`. */
function block(text: string): BlockRun {
  const found = blocks.find((candidate) => candidate.script.includes(text));
  expect(found, `no walkthrough block runs ${text}`).toBeDefined();
  return found!;
}

/** The JSON documents a block printed (grpcurl prints each response as one pretty-printed object). */
function documents(output: string): Record<string, unknown>[] {
  return [...output.matchAll(/^\{\n[\s\S]*?^\}$/gm)].map((match) => JSON.parse(match[0]) as Record<string, unknown>);
}

describe('the README walkthrough with grpcurl', () => {
  it('runs to the end, every command succeeding', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(6);
    expect(exitCode, `stderr:\n${stderr}\nstdout of the last block:\n${blocks.at(-1)?.stdout}`).toBe(0);
    // The one refusal the walkthrough shows, and nothing else on standard error but that.
    expect(stderr).toMatch(/^ERROR:\n {2}Code: PermissionDenied\n {2}Message: .+\n$/);
  });

  it(`uses ${REAL_GRPCURL ? 'grpcurl' : 'the reflection-only grpcurl stand-in'}`, () => {
    expect(blocks.every((run) => run.script.includes('grpcurl') || run.script.includes('npm run -s token'))).toBe(true);
  });

  it('lists and describes every service by reflection, and health answers SERVING', () => {
    const { stdout } = block('describe clinical.patient.v1.PatientService');
    for (const service of [
      'clinical.patient.v1.PatientService',
      'clinical.patient.v1.DocumentService',
      'clinical.vitals.v1.VitalsService',
      'clinical.audit.v1.AuditService',
      'clinical.audit.v1.AgentContextService',
      'clinical.audit.v1.SessionService',
      'clinical.analytics.v1.AnalyticsService',
      'grpc.health.v1.Health',
      'grpc.reflection.v1.ServerReflection',
    ]) {
      expect(stdout).toContain(`${service}\n`);
    }
    expect(stdout).toContain('clinical.patient.v1.PatientService is a service:');
    expect(stdout).toContain('rpc CreatePatient ( .clinical.patient.v1.CreatePatientRequest ) returns ( .clinical.patient.v1.CreatePatientResponse );');
    expect(stdout).toContain('clinical.patient.v1.Patient is a message:');
    expect(stdout).toMatch(/\.google\.type\.Date enrollment_date = 5/);
    expect(stdout).toContain('rpc StreamVitals ( stream .clinical.vitals.v1.StreamVitalsRequest ) returns ( .clinical.vitals.v1.StreamVitalsResponse );');
    expect(stdout).toContain('rpc VerifyAuditTrail ( .clinical.audit.v1.VerifyAuditTrailRequest )');
    expect(stdout).toContain('rpc GetSiteAnalytics ( .clinical.analytics.v1.GetSiteAnalyticsRequest )');
    expect(documents(stdout)).toContainEqual({ status: 'SERVING' });
  });

  let patientId: string;

  it('creates a patient and prints it, its patientId kept', () => {
    const [created] = documents(block('PatientService/CreatePatient').stdout) as [{ patient: Record<string, unknown> }];
    expect(created.patient).toMatchObject({ siteId: 'SITE-A', protocolId: 'RA001', enrollmentDate: { year: 2024, month: 1, day: 15 } });
    expect(created.patient.subjectNumber).toMatch(/^WALK-\d+$/);
    patientId = created.patient.patientId as string;
    expect(patientId).toMatch(/\S/);
  });

  it('records three readings by stream, lists and summarises them', () => {
    const [streamed, listed, summary] = documents(block('VitalsService/StreamVitals').stdout) as [
      Record<string, unknown>,
      { readings: Record<string, unknown>[] },
      Record<string, unknown>,
    ];
    expect(streamed).toEqual({ acceptedCount: '3' });
    expect(listed.readings).toHaveLength(3);
    expect(listed.readings.every((reading) => reading.patientId === patientId)).toBe(true);
    expect(listed.readings).toContainEqual(
      expect.objectContaining({ measurementTime: '2024-03-01T17:00:00Z', systolicBp: 131, deviceData: { device: 'cuff-7', firmware: '2.4.1' } }),
    );
    expect(summary).toMatchObject({ readingCount: '3', heartRate: { count: '3' } });
  });

  it("reads the patient's trail, verifies it intact, and shows a refusal with grpcurl's exit code", () => {
    const { stdout } = block('AuditService/ListAuditEvents');
    const [trail, verified] = documents(stdout) as [{ events: Record<string, unknown>[] }, Record<string, unknown>];
    expect(trail.events.length).toBeGreaterThanOrEqual(2);
    expect(trail.events.every((event) => event.patientId === patientId)).toBe(true);
    expect(trail.events.map((event) => event.action)).toEqual(expect.arrayContaining(['AUDIT_ACTION_INSERT', 'AUDIT_ACTION_READ']));
    // Sealed events carry their place and hash; one committed a moment ago may not be sealed yet (and carries neither).
    expect(trail.events.every((event) => (typeof event.sequenceNumber === 'string') === (typeof event.rowHash === 'string'))).toBe(true);
    expect(verified).toMatchObject({ intact: true });
    expect(stdout).toContain('exit status 71\n');
  });

  it('refreshes analytics and reads the site', () => {
    const [refreshed, site, list] = documents(block('AnalyticsService/RefreshAnalytics').stdout) as [
      Record<string, unknown>,
      { siteAnalytics: Record<string, unknown> },
      { siteAnalytics: Record<string, unknown>[] },
    ];
    expect(refreshed.asOfTime).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(site.siteAnalytics).toMatchObject({ siteId: 'SITE-A', protocolId: 'RA001', patientCount: '1', totalVitals: '3' });
    expect(list.siteAnalytics).toContainEqual(expect.objectContaining({ siteId: 'SITE-A', protocolId: 'RA001' }));
  });
});
