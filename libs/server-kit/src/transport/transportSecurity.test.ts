import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { analyticsV1 } from '@clinical/contracts';
import { createCertificateAuthority, eventually, type CertificateAuthority, type IssuedCertificate } from '@clinical/testing';
import { ClientError, createChannel, createClient, Metadata, Status } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineService } from '../server/defineService.js';
import { notYetServed } from '../server/notYetServed.js';
import type { ServiceModule } from '../server/startService.js';
import { ReflectionClient } from '../testing/reflectionClient.js';
import { startTestService, type TestService } from '../testing/startTestService.js';
import { PEER_IDENTITY_HEADER } from './transportSecurity.js';

/** Calls to site 'held' wait for the test; the answer names who called. */
const held = { release: () => {}, gate: Promise.resolve(), inside: false };
const probe: ServiceModule = {
  name: 'analytics-svc',
  createServices: () => [
    defineService(
      analyticsV1.AnalyticsServiceDefinition,
      {
        async getSiteAnalytics(request, context) {
          if (request.siteId === 'held') {
            held.inside = true;
            await held.gate;
          }
          return analyticsV1.GetSiteAnalyticsResponse.fromPartial({ siteAnalytics: { siteId: context.principal.sub } });
        },
        listSiteAnalytics: notYetServed('ListSiteAnalytics'),
        refreshAnalytics: notYetServed('RefreshAnalytics'),
        getAnalyticsFreshness: notYetServed('GetAnalyticsFreshness'),
      },
      {
        getSiteAnalytics: { roles: ['monitor', 'service'], cost: 1 },
        listSiteAnalytics: { roles: ['monitor'], cost: 1 },
        refreshAnalytics: { roles: ['admin'], cost: 1 },
        getAnalyticsFreshness: { roles: ['monitor'], cost: 1 },
      },
    ),
  ],
};

const REPORTING = 'spiffe://clinical/reporting';
let dir: string;
let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let server: IssuedCertificate;
let clients: { reporting: IssuedCertificate; stranger: IssuedCertificate; foreign: IssuedCertificate };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tls-'));
  ca = createCertificateAuthority(join(dir, 'ca'), 'Test CA');
  otherCa = createCertificateAuthority(join(dir, 'other-ca'), 'Another CA');
  server = ca.issue('server', { serverNames: ['localhost', '127.0.0.1'] });
  clients = {
    reporting: ca.issue('reporting', { clientIdentity: REPORTING }),
    stranger: ca.issue('stranger', { clientIdentity: 'spiffe://clinical/stranger' }),
    foreign: otherCa.issue('foreign', { clientIdentity: REPORTING }),
  };
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const read = (file: string) => readFileSync(file);
function tls(caFile: string, client?: IssuedCertificate): grpc.ChannelCredentials {
  return client
    ? grpc.credentials.createSsl(read(caFile), read(client.keyFile), read(client.certFile))
    : grpc.credentials.createSsl(read(caFile));
}

/** Health over a new channel with these credentials: SERVING, or the status the call failed with. */
async function healthOver(address: string, credentials: grpc.ChannelCredentials): Promise<string> {
  const channel = createChannel(address, credentials);
  try {
    const { status } = await createClient(HealthDefinition, channel).check({ service: '' }, { signal: AbortSignal.timeout(10_000) });
    return HealthCheckResponse_ServingStatus[status];
  } catch (error) {
    return error instanceof ClientError ? Status[error.code] : String(error);
  } finally {
    channel.close();
  }
}

/** GetSiteAnalytics over a new channel: who the service saw, or the status. */
async function callerOver(address: string, credentials: grpc.ChannelCredentials, metadata = Metadata()): Promise<string> {
  const channel = createChannel(address, credentials);
  try {
    const response = await createClient(analyticsV1.AnalyticsServiceDefinition, channel).getSiteAnalytics(
      { siteId: 'ok', protocolId: 'p' },
      { metadata, signal: AbortSignal.timeout(10_000) },
    );
    return `caller ${response.siteAnalytics?.siteId}`;
  } catch (error) {
    return error instanceof ClientError ? Status[error.code] : String(error);
  } finally {
    channel.close();
  }
}

describe('TLS', () => {
  let service: TestService;
  beforeAll(async () => {
    service = await startTestService(probe, { TLS_CERT_FILE: server.certFile, TLS_KEY_FILE: server.keyFile });
  });
  afterAll(async () => {
    await service?.stop();
  });

  it('serves TLS only: a plaintext client and a client that trusts another CA are turned away', async () => {
    expect(await healthOver(service.address, grpc.credentials.createInsecure())).toBe('UNAVAILABLE');
    expect(await healthOver(service.address, tls(otherCa.caFile))).toBe('UNAVAILABLE');
    expect(await healthOver(service.address, tls(ca.caFile))).toBe('SERVING');
  });

  it('keeps reflection and authenticated calls working over TLS', async () => {
    const reflection = new ReflectionClient(service.address, 'v1', tls(ca.caFile));
    try {
      expect(await reflection.listServices()).toEqual(
        expect.arrayContaining(['clinical.analytics.v1.AnalyticsService', 'grpc.health.v1.Health']),
      );
    } finally {
      reflection.close();
    }
    const token = await service.token({ sub: 'monitor-1', roles: ['monitor'], sites: '*' });
    expect(await callerOver(service.address, tls(ca.caFile), Metadata({ authorization: `Bearer ${token}` }))).toBe('caller monitor-1');
    expect(await callerOver(service.address, tls(ca.caFile))).toBe('UNAUTHENTICATED');
  });
});

describe('mutual TLS', () => {
  let service: TestService;
  beforeAll(async () => {
    service = await startTestService(probe, {
      TLS_CERT_FILE: server.certFile,
      TLS_KEY_FILE: server.keyFile,
      TLS_CLIENT_CA_FILE: ca.caFile,
      TLS_SERVICE_IDENTITIES: REPORTING,
    });
  });
  afterAll(async () => {
    await service?.stop();
  });

  it('requires a client certificate signed by its CA', async () => {
    expect(await healthOver(service.address, tls(ca.caFile))).toBe('UNAVAILABLE');
    expect(await healthOver(service.address, tls(ca.caFile, clients.foreign))).toBe('UNAVAILABLE');
    expect(await healthOver(service.address, tls(ca.caFile, clients.stranger))).toBe('SERVING');
  });

  it('takes a listed certificate identity, without a token, as a service principal, and no other', async () => {
    expect(await callerOver(service.address, tls(ca.caFile, clients.reporting))).toBe(`caller ${REPORTING}`);
    expect(await callerOver(service.address, tls(ca.caFile, clients.stranger))).toBe('UNAUTHENTICATED');
    // A client cannot claim an identity by metadata: only its certificate speaks.
    expect(await callerOver(service.address, tls(ca.caFile, clients.stranger), Metadata({ [PEER_IDENTITY_HEADER]: REPORTING }))).toBe(
      'UNAUTHENTICATED',
    );
  });

  it('prefers the token when a call carries both', async () => {
    const token = await service.token({ sub: 'monitor-2', roles: ['monitor'], sites: '*' });
    expect(await callerOver(service.address, tls(ca.caFile, clients.reporting), Metadata({ authorization: `Bearer ${token}` }))).toBe(
      'caller monitor-2',
    );
  });
});

describe('certificate rotation', () => {
  it('serves new connections with the new certificate once its files change, and lets calls on open connections finish', async () => {
    const live = { certFile: join(dir, 'live.crt'), keyFile: join(dir, 'live.key') };
    copyFileSync(server.certFile, live.certFile);
    copyFileSync(server.keyFile, live.keyFile);
    const service = await startTestService(probe, { TLS_CERT_FILE: live.certFile, TLS_KEY_FILE: live.keyFile, TLS_RELOAD_INTERVAL_MS: '100' });
    held.gate = new Promise((resolve) => {
      held.release = resolve;
    });
    held.inside = false;
    const channel = createChannel(service.address, tls(ca.caFile));
    try {
      const token = await service.token({ sub: 'monitor-3', roles: ['monitor'], sites: '*' });
      const inFlight = createClient(analyticsV1.AnalyticsServiceDefinition, channel).getSiteAnalytics(
        { siteId: 'held', protocolId: 'p' },
        { metadata: Metadata({ authorization: `Bearer ${token}` }) },
      );
      await eventually(async () => (held.inside ? true : undefined), 30_000, 'the call to be in');

      // The operator drops in a certificate from another CA (key first, then certificate, as a copy would).
      const rotated = otherCa.issue('rotated', { serverNames: ['localhost', '127.0.0.1'] });
      copyFileSync(rotated.keyFile, live.keyFile);
      copyFileSync(rotated.certFile, live.certFile);
      await eventually(async () => ((await healthOver(service.address, tls(otherCa.caFile))) === 'SERVING' ? true : undefined), 30_000, 'the new certificate');
      expect(await healthOver(service.address, tls(ca.caFile))).toBe('UNAVAILABLE');

      held.release();
      await expect(inFlight).resolves.toMatchObject({ siteAnalytics: { siteId: 'monitor-3' } });
      // Read again on demand (SIGHUP): nothing changed since.
      expect(service.running.reloadKeys().certificates).toBe(false);
    } finally {
      held.release();
      channel.close();
      await service.stop();
    }
  });

  it('refuses to start on certificate files that do not hold together', async () => {
    const error = await startTestService(probe, { TLS_CERT_FILE: server.certFile, TLS_KEY_FILE: clients.reporting.keyFile }).catch(
      (failure: unknown) => failure,
    );
    expect(String(error)).toMatch(/TLS_CERT_FILE/);
  });
});
