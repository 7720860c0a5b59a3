import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyticsV1 } from '@clinical/contracts';
import { eventually } from '@clinical/testing';
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { ClientError, Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineService } from '../server/defineService.js';
import { notYetServed } from '../server/notYetServed.js';
import type { ServiceModule } from '../server/startService.js';
import { startTestService, type TestService } from '../testing/startTestService.js';
import { mintToken } from './tokens.js';

const probe: ServiceModule = {
  name: 'analytics-svc',
  createServices: () => [
    defineService(
      analyticsV1.AnalyticsServiceDefinition,
      {
        getSiteAnalytics: async (_request, context) =>
          analyticsV1.GetSiteAnalyticsResponse.fromPartial({ siteAnalytics: { siteId: context.principal.sub } }),
        listSiteAnalytics: notYetServed('ListSiteAnalytics'),
        refreshAnalytics: notYetServed('RefreshAnalytics'),
        getAnalyticsFreshness: notYetServed('GetAnalyticsFreshness'),
      },
      {
        getSiteAnalytics: { roles: ['monitor'], cost: 1 },
        listSiteAnalytics: { roles: ['monitor'], cost: 1 },
        refreshAnalytics: { roles: ['admin'], cost: 1 },
        getAnalyticsFreshness: { roles: ['monitor'], cost: 1 },
      },
    ),
  ],
};

/** A signing key and its public half as a JWKS entry. */
interface SigningKey {
  readonly kid: string;
  readonly algorithm: string;
  /** An asymmetric key's private half, or an HS256 secret. */
  readonly signWith: { readonly privateKey: CryptoKey } | { readonly secret: string };
  readonly jwk: JWK;
}

async function asymmetricKey(kid: string, algorithm: 'RS256' | 'ES256'): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(algorithm, { extractable: true });
  return { kid, algorithm, signWith: { privateKey }, jwk: { ...(await exportJWK(publicKey)), kid, alg: algorithm, use: 'sig' } };
}

function sharedKey(kid: string): SigningKey {
  const secret = randomBytes(32).toString('base64url');
  return { kid, algorithm: 'HS256', signWith: { secret }, jwk: { kty: 'oct', k: Buffer.from(secret).toString('base64url'), kid, alg: 'HS256' } };
}

let dir: string;
let jwksFile: string;
let service: TestService;
let keys: { rsa: SigningKey; ec: SigningKey; shared: SigningKey; next: SigningKey };
const publish = (...published: SigningKey[]) => writeFileSync(jwksFile, JSON.stringify({ keys: published.map((key) => key.jwk) }));

/** A token signed by `key` (kid in its header unless `withoutKid`), its session opened. */
async function tokenOf(key: SigningKey, sub: string, withoutKid = false): Promise<string> {
  const { token, sid } = await mintToken({
    ...key.signWith,
    algorithm: key.algorithm,
    kid: withoutKid ? undefined : key.kid,
    issuer: service.config.jwt.issuer,
    audience: service.config.jwt.audience,
    sub,
    roles: ['monitor'],
    sites: '*',
  });
  await service.openSession(sid, sub);
  return token;
}

/** Who the service says called, or why it refused. */
async function callAs(token: string): Promise<string> {
  try {
    const response = await service.client(analyticsV1.AnalyticsServiceDefinition, token).getSiteAnalytics({ siteId: 's', protocolId: 'p' });
    return `caller ${response.siteAnalytics?.siteId}`;
  } catch (error) {
    return error instanceof ClientError ? `${Status[error.code]}: ${error.details}` : String(error);
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jwks-'));
  jwksFile = join(dir, 'jwks.json');
  keys = { rsa: await asymmetricKey('rsa-2026-01', 'RS256'), ec: await asymmetricKey('ec-2026-01', 'ES256'), shared: sharedKey('hs-2026-01'), next: await asymmetricKey('rsa-2026-07', 'RS256') };
  publish(keys.rsa, keys.ec, keys.shared);
  service = await startTestService(probe, {
    JWT_SECRET: '',
    JWT_JWKS_FILE: jwksFile,
    JWT_JWKS_RELOAD_INTERVAL_MS: '100',
    PAGE_TOKEN_SECRET: 'a-page-token-secret-of-at-least-32-chars',
  });
});

afterAll(async () => {
  await service?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('token keys from a JWKS file', () => {
  it('verifies RS256, ES256 and HS256 tokens by the key their kid names', async () => {
    expect(await callAs(await tokenOf(keys.rsa, 'rsa-user'))).toBe('caller rsa-user');
    expect(await callAs(await tokenOf(keys.ec, 'ec-user'))).toBe('caller ec-user');
    expect(await callAs(await tokenOf(keys.shared, 'hs-user'))).toBe('caller hs-user');
  });

  it('refuses a token that names no key, or a key it does not hold', async () => {
    expect(await callAs(await tokenOf(keys.rsa, 'no-kid', true))).toBe('UNAUTHENTICATED: token names no key (kid)');
    expect(await callAs(await tokenOf(keys.next, 'unknown-kid'))).toBe('UNAUTHENTICATED: invalid token');
  });

  it('rotates with no downtime: a key added is accepted, a key retired is refused, even for a token it accepted before', async () => {
    const old = await tokenOf(keys.rsa, 'old-key-user');
    expect(await callAs(old)).toBe('caller old-key-user');
    const fresh = await tokenOf(keys.next, 'new-key-user');

    // Step 1: publish the new key beside the old one. Both are good while tokens of either live.
    publish(keys.rsa, keys.ec, keys.shared, keys.next);
    await eventually(async () => ((await callAs(fresh)) === 'caller new-key-user' ? true : undefined), 30_000, 'the new key');
    expect(await callAs(old)).toBe('caller old-key-user');

    // Step 2, once every token of the old key has expired: retire it.
    publish(keys.ec, keys.shared, keys.next);
    await eventually(async () => ((await callAs(old)) === 'UNAUTHENTICATED: invalid token' ? true : undefined), 30_000, 'the old key to be retired');
    expect(await callAs(fresh)).toBe('caller new-key-user');
  });

  it('keeps the keys it has when the file is caught half written', async () => {
    const token = await tokenOf(keys.ec, 'steady-user');
    writeFileSync(jwksFile, '{"keys": [');
    expect(service.running.reloadKeys().tokenKeys).toBe(false);
    expect(await callAs(token)).toBe('caller steady-user');
    publish(keys.ec, keys.shared, keys.next);
  });
});
