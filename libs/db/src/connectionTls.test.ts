import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCertificateAuthority, startPostgresCluster, type CertificateAuthority, type PostgresCluster } from '@clinical/testing';
import { sql, type DatabasePool } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { databaseConnection, tlsMisconfiguration } from './connectionTls.js';
import { createDatabasePool } from './createDatabasePool.js';
import { migrate } from './migrate.js';

describe('databaseConnection', () => {
  it('reads libpq TLS parameters off the URL and keeps the rest', () => {
    expect(databaseConnection('postgres://u@db:5432/clinical?application_name=x')).toEqual({
      url: 'postgres://u@db:5432/clinical?application_name=x',
      ssl: false,
    });
    const verifyCa = databaseConnection('postgres://u@db/clinical?sslmode=verify-ca');
    expect(verifyCa.url).toBe('postgres://u@db/clinical');
    expect(verifyCa.ssl).toMatchObject({ rejectUnauthorized: true });
    expect(databaseConnection('postgres://u@db/clinical?sslmode=require').ssl).toMatchObject({ rejectUnauthorized: false });
    expect(databaseConnection('postgres://u@db/clinical?sslmode=verify-full').ssl).toMatchObject({ rejectUnauthorized: true, servername: 'db' });
  });

  it('refuses what it cannot honour, naming the parameter', () => {
    expect(() => databaseConnection('postgres://u@db/c?sslmode=prefer')).toThrow(/sslmode: prefer is not supported/);
    expect(() => databaseConnection('postgres://u@db/c?sslmode=verify-full&sslrootcert=/nowhere/ca.crt')).toThrow(/sslrootcert: cannot read/);
    expect(() => databaseConnection('postgres://u@db/c?sslmode=require&sslcert=/a.crt')).toThrow(/sslcert, sslkey/);
  });
});

describe('a PostgreSQL that takes TLS only', () => {
  let dir: string;
  let ca: CertificateAuthority;
  let otherCa: CertificateAuthority;
  let cluster: PostgresCluster;
  const pools: DatabasePool[] = [];

  /** The cluster's postgres database as `host`, with TLS parameters. */
  const urlOf = (host: string, parameters: Record<string, string>) =>
    `postgres://postgres@${host}:${cluster.port}/postgres?${new URLSearchParams(parameters).toString()}`;
  const poolOf = async (url: string) => {
    const pool = await createDatabasePool({ connectionUri: url, connectionTimeoutMs: 10_000 });
    pools.push(pool);
    return pool;
  };
  /** How connecting fails (the pool connects as it is made, to learn the database's types). */
  const failureOf = (url: string) => poolOf(url).then(() => undefined, (error: unknown) => error);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pg-tls-'));
    ca = createCertificateAuthority(join(dir, 'ca'), 'Database CA');
    otherCa = createCertificateAuthority(join(dir, 'other'), 'Another CA');
    // The certificate names localhost only: connecting to 127.0.0.1 shows whether the host name is checked.
    const server = ca.issue('postgres', { serverNames: ['localhost'] });
    cluster = await startPostgresCluster({ tls: { certFile: server.certFile, keyFile: server.keyFile, only: true } });
  }, 120_000);

  afterAll(async () => {
    await Promise.all(pools.map((pool) => pool.end().catch(() => {})));
    await cluster?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is reached with verify-full and its CA, over TLS', async () => {
    const pool = await poolOf(urlOf('localhost', { sslmode: 'verify-full', sslrootcert: ca.caFile }));
    const ssl = await pool.oneFirst(sql.type(z.object({ ssl: z.boolean() }))`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`);
    expect(ssl).toBe(true);
  });

  it('refuses, with a clear reason, a CA that did not sign its certificate and a host its certificate does not name', async () => {
    expect(tlsMisconfiguration(await failureOf(urlOf('localhost', { sslmode: 'verify-full', sslrootcert: otherCa.caFile })))).toMatch(
      /^the server's certificate was refused \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/,
    );
    expect(tlsMisconfiguration(await failureOf(urlOf('127.0.0.1', { sslmode: 'verify-full', sslrootcert: ca.caFile })))).toMatch(
      /ERR_TLS_CERT_ALTNAME_INVALID/,
    );
    // verify-ca checks the chain, not the name.
    const byAddress = await poolOf(urlOf('127.0.0.1', { sslmode: 'verify-ca', sslrootcert: ca.caFile }));
    await expect(byAddress.query(sql.unsafe`SELECT 1`)).resolves.toBeDefined();
  });

  it('turns plaintext away', async () => {
    expect(tlsMisconfiguration(await failureOf(urlOf('localhost', { sslmode: 'disable' })))).toBe(
      'the server accepts TLS connections only: set sslmode=verify-full with sslrootcert',
    );
  });

  it('migrates over TLS', async () => {
    const applied = await migrate({ databaseUrl: urlOf('localhost', { sslmode: 'verify-full', sslrootcert: ca.caFile }) });
    expect(applied.length).toBeGreaterThan(0);
  });
});
