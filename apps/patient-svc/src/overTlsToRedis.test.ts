import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRedisClient, waitForRedis, type RedisClient } from '@clinical/cache';
import { patientV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { createCertificateAuthority, eventually, startRedisServer, type CertificateAuthority, type RedisServer } from '@clinical/testing';
import { ClientError, Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientServiceModule } from './patientServiceModule.js';
import { newPatient } from './testing/fixtures.js';

// A redis-server of this test's own that speaks TLS only (--port 0) and wants client certificates.
let dir: string;
let ca: CertificateAuthority;
let redis: RedisServer;
let service: TestService;
let inspector: RedisClient;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'patient-redis-tls-'));
  ca = createCertificateAuthority(join(dir, 'ca'), 'Cache CA');
  const server = ca.issue('redis', { serverNames: ['localhost', '127.0.0.1'] });
  const client = ca.issue('patient-svc', { clientIdentity: 'spiffe://clinical/patient-svc' });
  redis = await startRedisServer({ tls: { ...server, caFile: ca.caFile, requireClientCertificates: true } });
  service = await startTestService(patientServiceModule, {
    REDIS_URL: redis.url,
    REDIS_TLS_CA_FILE: ca.caFile,
    REDIS_TLS_CERT_FILE: client.certFile,
    REDIS_TLS_KEY_FILE: client.keyFile,
    RATE_LIMIT_POINTS: '100',
    // A loaded machine must not time a command out: the service would then rightly ask PostgreSQL,
    // where the session this file marks revoked in Redis alone is still live.
    REDIS_COMMAND_TIMEOUT_MS: '5000',
  });
  inspector = createRedisClient({
    url: redis.url,
    tls: { ca: readFileSync(ca.caFile), cert: readFileSync(client.certFile), key: readFileSync(client.keyFile) },
    commandTimeoutMs: 5_000,
  });
  expect(await waitForRedis(inspector, 10_000)).toBe(true);
}, 120_000);

afterAll(async () => {
  inspector?.disconnect();
  await service?.stop();
  await redis?.remove();
  rmSync(dir, { recursive: true, force: true });
});

const keysLike = async (pattern: string) => inspector.keys(`${service.config.redisKeyPrefix}${pattern}`);

describe('patient-svc over TLS to Redis', () => {
  it('keeps its sessions, cache and rate limits in a Redis it reaches over TLS only', async () => {
    const token = await service.token({ sub: 'tls-cache-user', roles: ['coordinator'], sites: ['SITE-A'] });
    const client = service.client(patientV1.PatientServiceDefinition, token);
    const { patient } = await client.createPatient({ patient: newPatient(), requestId: '' });
    // The session's first check cached PostgreSQL's answer in Redis.
    const [sessionKey] = await keysLike('session:*');
    expect(await inspector.get(sessionKey!)).toBe('live');
    expect((await client.getPatient({ patientId: patient!.patientId })).patient).toEqual(patient);
    expect(await keysLike(`*${patient!.patientId}*`)).not.toHaveLength(0);

    // The caller's window of 100 points runs out in Redis.
    const outcomes = await Promise.all(
      Array.from({ length: 130 }, () => client.getPatient({ patientId: patient!.patientId }).then(() => 'OK', (error: unknown) => (error as ClientError).code)),
    );
    expect(outcomes).toContain(Status.RESOURCE_EXHAUSTED);
    expect((await inspector.keys('*')).some((key) => !key.includes('session:') && !key.includes(patient!.patientId))).toBe(true);
  });

  it('ends a session marked revoked in Redis on its next call', async () => {
    const token = await service.token({ sub: 'tls-revoked-user', roles: ['coordinator'], sites: ['SITE-A'] });
    const client = service.client(patientV1.PatientServiceDefinition, token);
    await expect(client.listPatients({ pageSize: 1 })).resolves.toBeDefined();
    await eventually(async () => ((await keysLike('session:*')).length > 0 ? true : undefined), 10_000, 'the session cached');
    // What a revocation leaves in the cache. The inspector has no key prefix: KEYS answers whole names, and SET takes them so.
    for (const key of await keysLike('session:*')) {
      await inspector.set(key, 'revoked', 'EX', 600);
    }
    await expect(client.listPatients({ pageSize: 1 })).rejects.toMatchObject({ code: Status.UNAUTHENTICATED });
  }, 60_000);
});
