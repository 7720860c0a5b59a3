import type { ChildProcess } from 'node:child_process';
import { analyticsV1, auditV1, patientV1, vitalsV1 } from '@clinical/contracts';
import type { ServiceName } from '@clinical/server-kit';
import { eventually, parsePrometheusText, samplesOf } from '@clinical/testing';
import { createChannel, createClient, Metadata, type Channel } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { allServing, createDevStack, exitOf, freePort, type DevStack, type StartRun } from './devStack.js';

/**
 * Two processes of every service on one database and one Redis: the stack
 * `npm start` runs, and a second process of each service started as it starts
 * them, with the settings it recorded (and a Prometheus endpoint, to see what
 * each one served). Callers balance over both with grpc-js `round_robin`.
 * SERVICES are in the order of the stack's service ports.
 */
const SERVICES = ['patient-svc', 'vitals-svc', 'audit-svc', 'analytics-svc'] as const satisfies readonly ServiceName[];

let stack: DevStack;
let run: StartRun;
const second = new Map<ServiceName, { port: number; metricsPort: number; child: ChildProcess }>();
const first = new Map<ServiceName, number>();
const channels: Channel[] = [];
let metadata: Metadata;

beforeAll(async () => {
  stack = await createDevStack();
  run = stack.npmStart();
  await stack.untilServing(run);
  for (const [index, name] of SERVICES.entries()) {
    first.set(name, stack.ports.services[index]!);
    const [port, metricsPort] = [await freePort(), await freePort()];
    const child = stack.startServiceProcess(name, port, { METRICS_PORT: String(metricsPort), METRICS_HOST: '127.0.0.1' });
    second.set(name, { port, metricsPort, child });
  }
  await eventually(async () => ((await allServing([...second.values()].map(({ port }) => port))) ? true : undefined), 120_000, 'the second processes');
  const token = await stack.npmRun('token', ['--roles', 'coordinator,auditor,monitor', '--sites', '*', '--sub', 'replica-tester']);
  metadata = Metadata({ authorization: `Bearer ${token}` });
}, 600_000);

afterAll(async () => {
  for (const channel of channels) {
    channel.close();
  }
  for (const { child } of second.values()) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exitOf(child);
    }
  }
  if (run?.child.pid && run.child.exitCode === null) {
    process.kill(-run.child.pid, 'SIGINT');
    await exitOf(run.child);
  }
  stack?.remove();
}, 120_000);

/** A channel to one address, or balanced round-robin over several (the `ipv4:` target grpc-js resolves to each). */
function channelTo(ports: readonly number[]): Channel {
  const channel =
    ports.length === 1
      ? createChannel(`127.0.0.1:${ports[0]}`)
      : createChannel(`ipv4:${ports.map((port) => `127.0.0.1:${port}`).join(',')}`, undefined, {
          'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
        });
  channels.push(channel);
  return channel;
}

const bothOf = (name: ServiceName) => [first.get(name)!, second.get(name)!.port];
/** No call may hang the test. */
const bounded = () => ({ signal: AbortSignal.timeout(30_000) });

/** How many calls of `method` the second process of `name` answered OK, by its Prometheus endpoint. */
async function servedBySecond(name: ServiceName, method: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${second.get(name)!.metricsPort}/metrics`);
  const samples = samplesOf(parsePrometheusText(await response.text()), 'rpc_server_call_duration_count', { rpc_method: method, rpc_status_code: 'OK' });
  return samples.reduce((sum, sample) => sum + sample.value, 0);
}

/** A patient of SITE-R (through patient-svc's first process), for the vitals calls. */
async function newPatient(): Promise<patientV1.Patient> {
  const patients = createClient(patientV1.PatientServiceDefinition, channelTo([first.get('patient-svc')!]), { '*': { metadata } });
  const { patient } = await patients.createPatient(
    {
      patient: patientV1.Patient.fromPartial({
        subjectNumber: `RR-${Math.random().toString(36).slice(2, 10)}`,
        siteId: 'SITE-R',
        protocolId: 'RR001',
        enrollmentDate: { year: 2024, month: 5, day: 2 },
        treatmentArm: 'ARM-0',
      }),
    },
    bounded(),
  );
  return patient!;
}

describe('two processes of every service', () => {
  it('share each caller’s calls when the caller balances round-robin over both', async () => {
    const { patientId } = await newPatient();
    await createClient(vitalsV1.VitalsServiceDefinition, channelTo([first.get('vitals-svc')!]), { '*': { metadata } }).recordVitals(
      { reading: { patientId, measurementTime: new Date(Date.now() - 60_000), heartRate: 70 } },
      bounded(),
    );
    // One client, over one balanced channel, per service: as a caller holds it.
    const patients = createClient(patientV1.PatientServiceDefinition, channelTo(bothOf('patient-svc')), { '*': { metadata } });
    const vitals = createClient(vitalsV1.VitalsServiceDefinition, channelTo(bothOf('vitals-svc')), { '*': { metadata } });
    const audit = createClient(auditV1.AuditServiceDefinition, channelTo(bothOf('audit-svc')), { '*': { metadata } });
    const analytics = createClient(analyticsV1.AnalyticsServiceDefinition, channelTo(bothOf('analytics-svc')), { '*': { metadata } });
    const balanced: [ServiceName, string, () => Promise<unknown>][] = [
      ['patient-svc', `${patientV1.PatientServiceDefinition.fullName}/GetPatient`, () => patients.getPatient({ patientId }, bounded())],
      ['vitals-svc', `${vitalsV1.VitalsServiceDefinition.fullName}/GetLatestVitals`, () => vitals.getLatestVitals({ patientId }, bounded())],
      ['audit-svc', `${auditV1.AuditServiceDefinition.fullName}/ListAuditEvents`, () => audit.listAuditEvents({ pageSize: 1 }, bounded())],
      ['analytics-svc', `${analyticsV1.AnalyticsServiceDefinition.fullName}/GetAnalyticsFreshness`, () => analytics.getAnalyticsFreshness({}, bounded())],
    ];
    const calls = 40;
    for (const [name, method, call] of balanced) {
      const before = await servedBySecond(name, method);
      for (let index = 0; index < calls; index += 1) {
        await call();
      }
      const served = (await servedBySecond(name, method)) - before;
      // Neither process took them all: round-robin alternates over the ready subchannels.
      expect(served, name).toBeGreaterThan(0);
      expect(served, name).toBeLessThan(calls);
    }
  });

  it('never serves through one process a record older than a write another process acknowledged, under balanced load', async () => {
    const written = await newPatient();
    const { patientId } = written;
    // Balanced reads of the same patient and its readings keep both processes' caches warm meanwhile.
    const patientsBalanced = createClient(patientV1.PatientServiceDefinition, channelTo(bothOf('patient-svc')), { '*': { metadata } });
    const vitalsBalanced = createClient(vitalsV1.VitalsServiceDefinition, channelTo(bothOf('vitals-svc')), { '*': { metadata } });
    let stop = false;
    const load = [
      (async () => {
        while (!stop) {
          await patientsBalanced.getPatient({ patientId }, bounded());
        }
      })(),
      (async () => {
        while (!stop) {
          await vitalsBalanced.getLatestVitals({ patientId }, bounded());
        }
      })(),
    ];
    onTestFinished(async () => {
      stop = true;
      await Promise.allSettled(load);
    });

    // Each write goes to one process and the read straight after to the other, alternating.
    const direct = (name: ServiceName, which: 0 | 1) => channelTo([bothOf(name)[which]!]);
    const patientsOn = [0, 1].map((which) => createClient(patientV1.PatientServiceDefinition, direct('patient-svc', which as 0 | 1), { '*': { metadata } }));
    const vitalsOn = [0, 1].map((which) => createClient(vitalsV1.VitalsServiceDefinition, direct('vitals-svc', which as 0 | 1), { '*': { metadata } }));
    let latest = written;
    const stale: string[] = [];
    for (let round = 1; round <= 30; round += 1) {
      const [writer, reader] = round % 2 === 0 ? [0, 1] : [1, 0];
      const { patient } = await patientsOn[writer]!.updatePatient(
        { patient: { ...latest, treatmentArm: `ARM-${round}` }, updateMask: ['treatment_arm'], reason: '', requestId: '' },
        bounded(),
      );
      latest = patient!;
      const { patient: read } = await patientsOn[reader]!.getPatient({ patientId }, bounded());
      if (read?.treatmentArm !== `ARM-${round}`) {
        stale.push(`round ${round}: patient read ${read?.treatmentArm}`);
      }

      const measurementTime = new Date(Date.now() - 60_000 + round);
      await vitalsOn[writer]!.recordVitals({ reading: { patientId, measurementTime, heartRate: 60 + round } }, bounded());
      const { reading } = await vitalsOn[reader]!.getLatestVitals({ patientId }, bounded());
      if (reading?.measurementTime?.getTime() !== measurementTime.getTime()) {
        stale.push(`round ${round}: latest reading from ${reading?.measurementTime?.toISOString()}`);
      }
    }
    stop = true;
    await Promise.all(load);
    expect(stale).toEqual([]);
  });

  it('keeps answering a balanced caller when one process stops', async () => {
    const patients = createClient(patientV1.PatientServiceDefinition, channelTo(bothOf('patient-svc')), { '*': { metadata } });
    const { patientId } = await newPatient();
    for (let index = 0; index < 10; index += 1) {
      await patients.getPatient({ patientId }, bounded());
    }
    const { child } = second.get('patient-svc')!;
    // A rolling restart's stop: SIGTERM, the process drains and ends.
    child.kill('SIGTERM');
    await exitOf(child);
    for (let index = 0; index < 20; index += 1) {
      const { patient } = await patients.getPatient({ patientId }, bounded());
      expect(patient?.patientId).toBe(patientId);
    }
  });
});
