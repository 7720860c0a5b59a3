import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { patientV1 } from '@clinical/contracts';
import { databaseConnection, migrate, sql } from '@clinical/db';
import { ConfigError } from '@clinical/server-kit';
import { startTestService } from '@clinical/server-kit/testing';
import { createCertificateAuthority, startPostgresCluster, type CertificateAuthority, type PostgresCluster } from '@clinical/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientServiceModule } from './patientServiceModule.js';
import { newPatient } from './testing/fixtures.js';

// A PostgreSQL of this test's own that takes TLS connections only, with a certificate made here.
let dir: string;
let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let cluster: PostgresCluster;
const databaseUrl = (caFile: string) =>
  `postgres://postgres@localhost:${cluster.port}/clinical?sslmode=verify-full&sslrootcert=${encodeURIComponent(caFile)}`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'patient-pg-tls-'));
  ca = createCertificateAuthority(join(dir, 'ca'), 'Database CA');
  otherCa = createCertificateAuthority(join(dir, 'other'), 'Another CA');
  const server = ca.issue('postgres', { serverNames: ['localhost'] });
  cluster = await startPostgresCluster({ tls: { certFile: server.certFile, keyFile: server.keyFile, only: true } });
  const { default: pg } = await import('pg');
  const connection = databaseConnection(cluster.url('postgres', { sslmode: 'verify-ca', sslrootcert: ca.caFile }));
  const admin = new pg.Client({ connectionString: connection.url, ssl: connection.ssl });
  await admin.connect();
  await admin.query('CREATE DATABASE clinical');
  await admin.end();
  await migrate({ databaseUrl: databaseUrl(ca.caFile) });
}, 180_000);

afterAll(async () => {
  await cluster?.remove();
  rmSync(dir, { recursive: true, force: true });
});

describe('patient-svc over TLS to PostgreSQL', () => {
  it('serves with sslmode=verify-full, every connection encrypted', async () => {
    const service = await startTestService(patientServiceModule, { DATABASE_URL: databaseUrl(ca.caFile) });
    try {
      const client = service.client(patientV1.PatientServiceDefinition, await service.token({ sub: 'tls-writer', roles: ['coordinator'], sites: ['SITE-A'] }));
      const { patient } = await client.createPatient({ patient: newPatient(), requestId: '' });
      expect((await client.getPatient({ patientId: patient!.patientId })).patient).toEqual(patient);
      const plaintext = await service.running.runtime.pool.anyFirst(
        sql.unsafe`SELECT count(*) FILTER (WHERE NOT s.ssl) AS plaintext FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'clinical_patient_svc'`,
      );
      expect(Number(plaintext[0])).toBe(0);
    } finally {
      await service.stop();
    }
  });

  it('refuses to start, saying why, when the CA is not the one that signed the server certificate', async () => {
    const error = await startTestService(patientServiceModule, { DATABASE_URL: databaseUrl(otherCa.caFile) }).catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([expect.stringMatching(/^DATABASE_URL: the server's certificate was refused \(/)]);
  });
});
