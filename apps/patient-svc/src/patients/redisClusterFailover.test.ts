import { patientV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { eventually, startRedisCluster, type RedisCluster } from '@clinical/testing';
import { ClientError, Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { patientServiceModule } from '../patientServiceModule.js';
import { newPatient } from '../testing/fixtures.js';
import { patientCacheKey } from './patientCache.js';

/**
 * patient-svc over a Redis Cluster of its own (three masters, each with a
 * replica), under a steady mix of updates and reads, while a master is killed
 * outright, its replica takes over, and the killed node comes back as a
 * replica. Every read must return at least what the caller was last told was
 * written, whatever Redis is going through; and once the cluster is whole the
 * cache serves again.
 */
let cluster: RedisCluster;
let service: TestService;
let client: patientV1.PatientServiceClient;

beforeAll(async () => {
  cluster = await startRedisCluster();
  // The callers' rate limit stays on, through the cluster, but far above what this load spends.
  service = await startTestService(patientServiceModule, { REDIS_CLUSTER_NODES: cluster.nodes.join(','), RATE_LIMIT_POINTS: '1000000' });
  client = service.client(patientV1.PatientServiceDefinition, await service.token({ sub: 'coordinator', roles: ['coordinator'], sites: ['SITE-A'] }));
});

afterAll(async () => {
  await service?.stop();
  await cluster?.remove();
});

/** No call may hang the test: one without an answer is aborted and reported. */
const bounded = () => ({ signal: AbortSignal.timeout(30_000) });
const armNumber = (patient: patientV1.Patient | undefined) => Number(patient?.treatmentArm.replace('ARM-', ''));

describe('patients over a Redis Cluster', () => {
  it('are never read stale while a master fails over and its node rejoins, and are cached again once the cluster is whole', async () => {
    const created = await Promise.all(Array.from({ length: 24 }, () => client.createPatient({ patient: newPatient({ treatmentArm: 'ARM-0' }) }, bounded())));
    const latest = created.map(({ patient }) => patient!);
    // What each caller was told: the arm number of the last acknowledged update of each patient.
    const acknowledged = latest.map(() => 0);
    const stale: string[] = [];
    const failed: string[] = [];
    let writes = 0;
    let reads = 0;
    let stop = false;
    const describeError = (error: unknown) => (error instanceof ClientError ? Status[error.code] : String(error));

    // Two writers, each owning half the patients (one update at a time per patient), and three readers of any patient.
    const writer = async (owned: number[]) => {
      for (let turn = 0; !stop; turn += 1) {
        const index = owned[turn % owned.length]!;
        const next = acknowledged[index]! + 1;
        try {
          const { patient } = await client.updatePatient(
            { patient: { ...latest[index]!, treatmentArm: `ARM-${next}` }, updateMask: ['treatment_arm'], reason: '', requestId: '' },
            bounded(),
          );
          latest[index] = patient!;
          acknowledged[index] = next;
          writes += 1;
        } catch (error) {
          failed.push(`UpdatePatient: ${describeError(error)}`);
        }
      }
    };
    const reader = async (seed: number) => {
      for (let turn = seed; !stop; turn += 7) {
        const index = turn % latest.length;
        const told = acknowledged[index]!;
        try {
          const { patient } = await client.getPatient({ patientId: latest[index]!.patientId }, bounded());
          if (armNumber(patient) < told) {
            stale.push(`patient ${index}: read ARM-${armNumber(patient)} after ARM-${told} was acknowledged`);
          }
          reads += 1;
        } catch (error) {
          failed.push(`GetPatient: ${describeError(error)}`);
        }
      }
    };
    const everyIndex = latest.map((_, index) => index);
    const load = [
      writer(everyIndex.filter((index) => index % 2 === 0)),
      writer(everyIndex.filter((index) => index % 2 === 1)),
      reader(0),
      reader(1),
      reader(2),
    ];
    // Stopped however the test ends: left running after a failed assertion, the loops would outlive the service.
    onTestFinished(async () => {
      stop = true;
      await Promise.all(load);
    });
    const progress = async (what: string) => {
      const [readsBefore, writesBefore] = [reads, writes];
      await eventually(async () => (reads >= readsBefore + 150 && writes >= writesBefore + 40 ? true : undefined), 120_000, what);
    };

    await progress('load on the whole cluster');
    const [killed] = await cluster.masters();
    await cluster.killMaster(killed!);
    // Its replica serves its slots now, with no replica of its own: writes there cannot be confirmed, and are not trusted.
    await progress('load after the failover');
    await cluster.restartNode(killed!);
    await progress('load once the node has rejoined');
    stop = true;
    await Promise.all(load);

    expect(stale).toEqual([]);
    expect(failed).toEqual([]);

    // Whole again: each patient read is cached, on every master, holding the record last acknowledged.
    const { redis } = service;
    await eventually(
      async () => {
        for (const [index, { patientId }] of latest.entries()) {
          const { patient } = await client.getPatient({ patientId }, bounded());
          expect(armNumber(patient)).toBe(acknowledged[index]);
          const entry = await redis.getBuffer(patientCacheKey(patientId));
          const encoded = patientV1.Patient.encode(patient!).finish();
          if (!entry || !Buffer.from(encoded).equals(entry.subarray(entry.length - encoded.length))) {
            return undefined;
          }
        }
        return true;
      },
      60_000,
      'every patient cached with its last acknowledged record',
    );
  }, 300_000);
});
