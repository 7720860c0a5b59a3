import type { ChildProcess } from 'node:child_process';
import { analyticsV1, auditV1, patientV1, sessionV1, vitalsV1 } from '@clinical/contracts';
import { eventually } from '@clinical/testing';
import { ClientError, createChannel, createClient, Metadata, Status, type Channel } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { allServing, createDevStack, exitOf, freePort, type DevStack, type StartRun } from './devStack.js';

/**
 * The whole stack as `npm start` runs it, plus a second patient-svc process
 * (a replica) on the same database and Redis: a session revoked through
 * SessionService is refused on the very next call to every one of them.
 */
let stack: DevStack;
let run: StartRun;
let replica: ChildProcess;
let replicaPort: number;
const channels: Channel[] = [];

beforeAll(async () => {
  stack = await createDevStack();
  run = stack.npmStart();
  await stack.untilServing(run);
  // A replica of patient-svc, run as npm start runs the services, with the settings it recorded.
  replicaPort = await freePort();
  replica = stack.startServiceProcess('patient-svc', replicaPort);
  await eventually(async () => ((await allServing([replicaPort])) ? true : undefined), 120_000, 'the replica');
}, 600_000);

afterAll(async () => {
  for (const channel of channels) {
    channel.close();
  }
  if (replica && replica.exitCode === null) {
    replica.kill('SIGTERM');
    await exitOf(replica);
  }
  if (run?.child.pid && run.child.exitCode === null) {
    process.kill(-run.child.pid, 'SIGINT');
    await exitOf(run.child);
  }
  stack?.remove();
}, 120_000);

/** One call to each service (both patient-svc processes), as `token`: each call's status. */
function callsAs(token: string): Record<string, () => Promise<Status>> {
  const metadata = Metadata({ authorization: `Bearer ${token}` });
  const on = (port: number) => {
    const channel = createChannel(`127.0.0.1:${port}`);
    channels.push(channel);
    return channel;
  };
  const [patientPort, vitalsPort, auditPort, analyticsPort] = stack.ports.services as [number, number, number, number];
  const patients = createClient(patientV1.PatientServiceDefinition, on(patientPort), { '*': { metadata } });
  const patientsReplica = createClient(patientV1.PatientServiceDefinition, on(replicaPort), { '*': { metadata } });
  const vitals = createClient(vitalsV1.VitalsServiceDefinition, on(vitalsPort), { '*': { metadata } });
  const audit = createClient(auditV1.AuditServiceDefinition, on(auditPort), { '*': { metadata } });
  const analytics = createClient(analyticsV1.AnalyticsServiceDefinition, on(analyticsPort), { '*': { metadata } });
  // No call may hang the test: one that gets no answer ends as UNKNOWN (aborted), which the assertions refuse.
  const bounded = () => ({ signal: AbortSignal.timeout(30_000) });
  const statusOf = (call: Promise<unknown>) =>
    call.then(
      () => Status.OK,
      (error: unknown) => (error instanceof ClientError ? error.code : Status.UNKNOWN),
    );
  return {
    'patient-svc': () => statusOf(patients.listPatients({ pageSize: 1 }, bounded())),
    'patient-svc replica': () => statusOf(patientsReplica.listPatients({ pageSize: 1 }, bounded())),
    'vitals-svc': () => statusOf(vitals.getLatestVitals({ patientId: '6f1c2a52-8a8f-4d0e-9a37-3c1f1f0f6f10' }, bounded())),
    'audit-svc': () => statusOf(audit.listAuditEvents({ pageSize: 1 }, bounded())),
    'analytics-svc': () => statusOf(analytics.getAnalyticsFreshness({}, bounded())),
  };
}

describe('a session revoked mid-traffic', () => {
  it('is refused on the very next call to every service and replica, and calls already started after the revocation fail', async () => {
    const token = await stack.npmRun('token', ['--roles', 'coordinator,auditor,monitor', '--sites', '*', '--sub', 'dr-leaving']);
    const adminToken = await stack.npmRun('token', ['--roles', 'admin', '--sites', '*', '--sub', 'security-officer']);
    const calls = callsAs(token);
    const sid = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { sid: string }).sid;

    // Traffic on every service, as the user's client would send it.
    let revokedAt = Number.POSITIVE_INFINITY;
    let stop = false;
    const acceptedAfterRevocation: string[] = [];
    const accepted = new Map<string, number>();
    const traffic = Object.entries(calls).map(async ([name, call]) => {
      while (!stop) {
        const startedAt = Date.now();
        const status = await call();
        if (status !== Status.UNAUTHENTICATED) {
          accepted.set(name, (accepted.get(name) ?? 0) + 1);
          if (startedAt > revokedAt) {
            acceptedAfterRevocation.push(`${name}: ${Status[status]}`);
          }
        }
      }
    });
    // Stopped however the test ends: left running after a failed assertion, the loops would spin on closed channels.
    onTestFinished(async () => {
      stop = true;
      await Promise.all(traffic);
    });
    await eventually(async () => (accepted.size === Object.keys(calls).length ? true : undefined), 60_000, 'traffic on every service');

    const sessionsChannel = createChannel(`127.0.0.1:${stack.ports.services[2]}`);
    channels.push(sessionsChannel);
    const sessions = createClient(sessionV1.SessionServiceDefinition, sessionsChannel, {
      '*': { metadata: Metadata({ authorization: `Bearer ${adminToken}` }) },
    });
    await sessions.revokeSession({ sessionId: sid, reason: 'left the study team' });
    revokedAt = Date.now();
    const nextCalls = Object.fromEntries(await Promise.all(Object.entries(calls).map(async ([name, call]) => [name, Status[await call()]])));
    stop = true;
    await Promise.all(traffic);

    expect(nextCalls).toEqual(Object.fromEntries(Object.keys(calls).map((name) => [name, 'UNAUTHENTICATED'])));
    expect(acceptedAfterRevocation).toEqual([]);
  }, 300_000);
});
