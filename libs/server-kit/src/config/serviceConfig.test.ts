import { describe, expect, it } from 'vitest';
import { ConfigError } from './loadConfig.js';
import { loadServiceConfig } from './serviceConfig.js';

const valid = {
  DATABASE_URL: 'postgres://owner@db.internal:5432/clinical',
  REDIS_URL: 'redis://cache.internal:6379',
  JWT_SECRET: 'a-secret-that-is-long-enough-for-hs256!!',
};

describe('loadServiceConfig', () => {
  it('applies the documented defaults and connects as the service role', () => {
    const config = loadServiceConfig('vitals-svc', valid);
    expect(config.port).toBe(50052);
    expect(new URL(config.databaseUrl).username).toBe('clinical_vitals_svc');
    expect(new URL(config.databaseUrl).pathname).toBe('/clinical');
    expect(config.cacheTtlSeconds).toEqual({ patient: 300, query: 300, session: 3600 });
    expect(config.rateLimit.windowSeconds).toBe(60);
  });

  it('lets each service have its own port and database URL', () => {
    const config = loadServiceConfig('audit-svc', {
      ...valid,
      AUDIT_SVC_PORT: '6000',
      AUDIT_SVC_DATABASE_URL: 'postgres://auditor:pw@replica:5432/clinical',
    });
    expect(config.port).toBe(6000);
    expect(config.databaseUrl).toBe('postgres://auditor:pw@replica:5432/clinical');
  });

  it('names every bad variable at once', () => {
    let thrown: unknown;
    try {
      loadServiceConfig('patient-svc', {
        DATABASE_URL: 'not a url',
        RATE_LIMIT_POINTS: 'many',
        PATIENT_SVC_PORT: '70000',
        REDIS_CLUSTER_NODES: 'a:1,b',
      });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    const message = (thrown as ConfigError).message;
    for (const variable of ['DATABASE_URL', 'RATE_LIMIT_POINTS', 'PATIENT_SVC_PORT', 'REDIS_CLUSTER_NODES', 'JWT_SECRET']) {
      expect(message).toContain(variable);
    }
  });

  it('requires a page-token secret when tokens are checked with a public key', () => {
    const publicKeyOnly = {
      DATABASE_URL: valid.DATABASE_URL,
      REDIS_URL: valid.REDIS_URL,
      JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----',
    };
    expect(() => loadServiceConfig('patient-svc', publicKeyOnly)).toThrow(/PAGE_TOKEN_SECRET/);
    expect(loadServiceConfig('patient-svc', { ...publicKeyOnly, PAGE_TOKEN_SECRET: 'p'.repeat(32) }).pageTokenSecret).toBe('p'.repeat(32));
  });

  it('needs Redis unless told to keep its state in process, and then refuses a Redis setting', () => {
    const { REDIS_URL: _redisUrl, ...withoutRedis } = valid;
    expect(() => loadServiceConfig('patient-svc', withoutRedis)).toThrow(/REDIS_URL: required/);
    expect(loadServiceConfig('patient-svc', valid).stateStore).toBe('redis');
    expect(loadServiceConfig('patient-svc', { ...withoutRedis, STATE_STORE: 'memory' }).stateStore).toBe('memory');
    expect(() => loadServiceConfig('patient-svc', { ...valid, STATE_STORE: 'memory' })).toThrow(/STATE_STORE: memory uses no Redis/);
    expect(() => loadServiceConfig('patient-svc', { ...withoutRedis, STATE_STORE: 'disk' })).toThrow(/STATE_STORE/);
    expect(() => loadServiceConfig('patient-svc', { ...withoutRedis, STATE_STORE: 'memory', NODE_ENV: 'production' })).toThrow(
      /STATE_STORE: memory is for development/,
    );
  });

  it('takes TLS settings that hold together, and production only with TLS', () => {
    const tls = { TLS_CERT_FILE: '/etc/tls/svc.crt', TLS_KEY_FILE: '/etc/tls/svc.key' };
    expect(loadServiceConfig('patient-svc', valid).tls).toBeUndefined();
    expect(
      loadServiceConfig('patient-svc', { ...valid, ...tls, TLS_CLIENT_CA_FILE: '/etc/tls/ca.crt', TLS_SERVICE_IDENTITIES: 'spiffe://a, spiffe://b' }).tls,
    ).toEqual({ ...{ certFile: tls.TLS_CERT_FILE, keyFile: tls.TLS_KEY_FILE }, clientCaFile: '/etc/tls/ca.crt', reloadIntervalMs: 5_000, serviceIdentities: ['spiffe://a', 'spiffe://b'] });
    expect(() => loadServiceConfig('patient-svc', { ...valid, TLS_CERT_FILE: tls.TLS_CERT_FILE })).toThrow(/set both, or neither/);
    expect(() => loadServiceConfig('patient-svc', { ...valid, TLS_CLIENT_CA_FILE: '/ca' })).toThrow(/TLS_CLIENT_CA_FILE: mutual TLS needs/);
    expect(() => loadServiceConfig('patient-svc', { ...valid, ...tls, TLS_SERVICE_IDENTITIES: 'x' })).toThrow(/TLS_SERVICE_IDENTITIES/);
    expect(() => loadServiceConfig('patient-svc', { ...valid, NODE_ENV: 'production' })).toThrow(/NODE_ENV=production serves TLS only/);
  });

  it('talks to Redis over TLS with a rediss:// URL or REDIS_CLUSTER_TLS, and production to both stores over TLS only', () => {
    expect(loadServiceConfig('patient-svc', valid).redisTls).toBeUndefined();
    expect(loadServiceConfig('patient-svc', { ...valid, REDIS_URL: 'rediss://cache:6380', REDIS_TLS_CA_FILE: '/ca' }).redisTls).toEqual({
      caFile: '/ca',
      certFile: undefined,
      keyFile: undefined,
    });
    const { REDIS_URL: _redisUrl, ...withoutRedisUrl } = valid;
    expect(loadServiceConfig('patient-svc', { ...withoutRedisUrl, REDIS_CLUSTER_NODES: 'a:1,b:2', REDIS_CLUSTER_TLS: 'on' }).redisTls).toBeDefined();
    expect(() => loadServiceConfig('patient-svc', { ...valid, REDIS_TLS_CA_FILE: '/ca' })).toThrow(/needs a rediss:\/\/ REDIS_URL/);
    expect(() => loadServiceConfig('patient-svc', { ...valid, REDIS_URL: 'rediss://c:1', REDIS_TLS_CERT_FILE: '/c' })).toThrow(/set both, or neither/);
    const production = {
      ...valid,
      NODE_ENV: 'production',
      TLS_CERT_FILE: '/t.crt',
      TLS_KEY_FILE: '/t.key',
    };
    let thrown: unknown;
    try {
      loadServiceConfig('patient-svc', production);
    } catch (error) {
      thrown = error;
    }
    expect((thrown as ConfigError).problems).toEqual([
      'REDIS_URL: NODE_ENV=production talks to Redis over TLS only; use rediss:// (or REDIS_CLUSTER_TLS=on)',
      'DATABASE_URL: NODE_ENV=production needs sslmode=verify-full (or verify-ca)',
    ]);
    expect(
      loadServiceConfig('patient-svc', { ...production, REDIS_URL: 'rediss://cache:6380', DATABASE_URL: `${valid.DATABASE_URL}?sslmode=verify-full` }).serviceName,
    ).toBe('patient-svc');
  });
});
