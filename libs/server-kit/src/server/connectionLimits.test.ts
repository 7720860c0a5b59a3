import * as http2 from 'node:http2';
import { analyticsV1 } from '@clinical/contracts';
import { ChannelCredentials, createChannel, createClient, Metadata, Status, type Channel } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health.js';
import { eventually } from '@clinical/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../config/loadConfig.js';
import { loadServiceConfig } from '../config/serviceConfig.js';
import { expectStatus } from '../testing/expectStatus.js';
import { startTestService, type TestService } from '../testing/startTestService.js';
import { defineService } from './defineService.js';
import { HEADER_HEADROOM_BYTES } from './listenerLimits.js';
import { notYetServed } from './notYetServed.js';
import type { ServiceModule } from './startService.js';

/**
 * Calls to site 'held' wait in the handler until the test releases them, one
 * at a time or all; the test learns what is inside without guessing how long
 * admission takes on a busy machine.
 */
const held = {
  waiting: [] as (() => void)[],
  entered: 0,
  inside: 0,
  mostInside: 0,
  changed: () => {},
  async hold(signal: AbortSignal) {
    this.entered += 1;
    this.inside += 1;
    this.mostInside = Math.max(this.mostInside, this.inside);
    this.changed();
    try {
      await new Promise<void>((resolve) => {
        this.waiting.push(resolve);
        signal.addEventListener('abort', () => resolve());
      });
    } finally {
      this.inside -= 1;
      this.changed();
    }
  },
  /** Resolves once `condition` holds. */
  until(condition: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (condition()) {
          this.changed = () => {};
          resolve();
        }
      };
      this.changed = check;
      check();
    });
  },
  releaseOne() {
    this.waiting.shift()?.();
  },
  releaseAll() {
    for (const release of this.waiting.splice(0)) {
      release();
    }
  },
};

const probeModule: ServiceModule = {
  name: 'analytics-svc',
  createServices: () => [
    defineService(
      analyticsV1.AnalyticsServiceDefinition,
      {
        async getSiteAnalytics(request, context) {
          if (request.siteId === 'held') {
            await held.hold(context.signal);
          }
          return analyticsV1.GetSiteAnalyticsResponse.fromPartial({});
        },
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

/** A channel with a connection of its own (grpc-js otherwise shares one per address across channels). */
function ownChannel(address: string): Channel {
  return createChannel(address, ChannelCredentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
}

/** Proves the service answers health checks over `channel`. */
async function expectServing(channel: Channel): Promise<void> {
  expect((await createClient(HealthDefinition, channel).check({ service: '' })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
}

/** True once a health check over `channel` answers SERVING; undefined while it fails (for eventually()). */
async function servesOver(channel: Channel): Promise<true | undefined> {
  try {
    await expectServing(channel);
    return true;
  } catch {
    return undefined;
  }
}

/** A bare HTTP/2 connection to the service, to see the frames a gRPC client hides. */
function rawConnection(address: string) {
  const session = http2.connect(`http://${address}`);
  session.on('error', () => {});
  return {
    session,
    settings: new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve)),
    goaway: new Promise<{ code: number; data: string }>((resolve) =>
      session.once('goaway', (code, _lastStreamId, data) => resolve({ code, data: data?.toString() ?? '' })),
    ),
    closed: new Promise<void>((resolve) => session.once('close', () => resolve())),
  };
}

describe('message, metadata, stream and ping limits', () => {
  let service: TestService;
  let authorization: Metadata;

  beforeAll(async () => {
    service = await startTestService(probeModule, {
      GRPC_MAX_RECEIVE_MESSAGE_BYTES: '65536',
      GRPC_MAX_METADATA_BYTES: '4096',
      GRPC_MAX_CONCURRENT_STREAMS: '2',
      GRPC_KEEPALIVE_MIN_PING_INTERVAL_MS: '3600000',
      GRPC_KEEPALIVE_MAX_PING_STRIKES: '2',
    });
    authorization = Metadata({ authorization: `Bearer ${await service.token({ sub: 'limits-tester', roles: ['monitor'], sites: '*' })}` });
  });
  afterAll(async () => {
    held.releaseAll();
    await service?.stop();
  });

  const analytics = (channel: Channel) => createClient(analyticsV1.AnalyticsServiceDefinition, channel, { '*': { metadata: authorization } });

  it('tells clients the stream and header list limits in its HTTP/2 SETTINGS', async () => {
    const raw = rawConnection(service.address);
    const settings = await raw.settings;
    expect(settings.maxConcurrentStreams).toBe(2);
    expect(settings.maxHeaderListSize).toBe(4096 + HEADER_HEADROOM_BYTES);
    raw.session.close();
    await raw.closed;
  });

  it('refuses a request message over GRPC_MAX_RECEIVE_MESSAGE_BYTES with RESOURCE_EXHAUSTED, and serves the next call', async () => {
    const request = { siteId: 'x'.repeat(70_000), protocolId: 'p' };
    const size = analyticsV1.GetSiteAnalyticsRequest.encode(analyticsV1.GetSiteAnalyticsRequest.fromPartial(request)).finish().length;
    const error = await expectStatus(analytics(service.channel).getSiteAnalytics(request), Status.RESOURCE_EXHAUSTED);
    expect(error.details).toBe(`Received message larger than max (${size} vs 65536)`);
    await expect(analytics(service.channel).getSiteAnalytics({ siteId: 'ok', protocolId: 'p' })).resolves.toBeDefined();
    await expectServing(service.channel);
  });

  it('refuses metadata over GRPC_MAX_METADATA_BYTES with RESOURCE_EXHAUSTED naming the limit, and serves the next call', async () => {
    const metadata = Metadata(authorization).set('x-padding', 'a'.repeat(5_000));
    const error = await expectStatus(
      analytics(service.channel).getSiteAnalytics({ siteId: 'ok', protocolId: 'p' }, { metadata }),
      Status.RESOURCE_EXHAUSTED,
    );
    expect(error.details).toMatch(/^request metadata takes \d+ bytes, more than the 4096 allowed$/);
    await expect(analytics(service.channel).getSiteAnalytics({ siteId: 'ok', protocolId: 'p' })).resolves.toBeDefined();
    await expectServing(service.channel);
  });

  it('resets a call whose headers pass the HTTP/2 header list limit, which the client reports as RESOURCE_EXHAUSTED, and serves the next call', async () => {
    const metadata = Metadata(authorization).set('x-padding', 'a'.repeat(4096 + HEADER_HEADROOM_BYTES));
    const error = await expectStatus(
      analytics(service.channel).getSiteAnalytics({ siteId: 'ok', protocolId: 'p' }, { metadata }),
      Status.RESOURCE_EXHAUSTED,
    );
    // grpc-js's words for RST_STREAM ENHANCE_YOUR_CALM.
    expect(error.details).toBe('Bandwidth exhausted or memory limit exceeded');
    await expect(analytics(service.channel).getSiteAnalytics({ siteId: 'ok', protocolId: 'p' })).resolves.toBeDefined();
    await expectServing(service.channel);
  });

  it('lets a client have GRPC_MAX_CONCURRENT_STREAMS calls in flight on a connection, queueing the next until one finishes', async () => {
    const channel = ownChannel(service.address);
    try {
      const client = analytics(channel);
      const calls = Array.from({ length: 3 }, () => client.getSiteAnalytics({ siteId: 'held', protocolId: 'p' }));
      await held.until(() => held.inside === 2);
      // The third call waits in the client: the server has not seen it.
      expect(held.entered).toBe(2);
      held.releaseOne();
      await held.until(() => held.entered === 3);
      held.releaseAll();
      await expect(Promise.all(calls)).resolves.toHaveLength(3);
      expect(held.mostInside).toBe(2);
      await expectServing(channel);
    } finally {
      held.releaseAll();
      channel.close();
    }
  });

  it('closes the connection of a client that pings too often with GOAWAY ENHANCE_YOUR_CALM "too_many_pings"', async () => {
    const raw = rawConnection(service.address);
    await raw.settings;
    // The first ping is allowed; each of the next three comes too soon: the third strike is one too many.
    for (let ping = 0; ping < 4; ping += 1) {
      raw.session.ping(() => {});
    }
    expect(await raw.goaway).toEqual({ code: http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, data: 'too_many_pings' });
    await raw.closed;
    await expectServing(service.channel);
  });
});

describe('the connection count', () => {
  let service: TestService;

  beforeAll(async () => {
    service = await startTestService(probeModule, { GRPC_MAX_CONNECTIONS: '2' });
  });
  afterAll(async () => {
    await service?.stop();
  });

  it('closes connections past GRPC_MAX_CONNECTIONS as they are accepted (UNAVAILABLE), keeps serving the open ones, and accepts again once one closes', async () => {
    const first = ownChannel(service.address);
    const second = ownChannel(service.address);
    const third = ownChannel(service.address);
    try {
      await expectServing(first);
      await expectServing(second);
      const refused = await expectStatus(createClient(HealthDefinition, third).check({ service: '' }), Status.UNAVAILABLE);
      expect(refused.details).toMatch(/^No connection established\. Last error: /);
      await expectServing(first);
      await expectServing(second);

      second.close();
      // The server counts the connection out once it sees it close: a new one gets in from then on.
      await eventually(
        async () => {
          const next = ownChannel(service.address);
          try {
            return await servesOver(next);
          } finally {
            next.close();
          }
        },
        60_000,
        'a new connection once one has closed',
      );
      await expectServing(first);
    } finally {
      first.close();
      second.close();
      third.close();
    }
  });
});

describe('idle connections', () => {
  let service: TestService;

  beforeAll(async () => {
    service = await startTestService(probeModule, { GRPC_MAX_CONNECTION_IDLE_MS: '200' });
  });
  afterAll(async () => {
    await service?.stop();
  });

  it('closes a connection without calls after GRPC_MAX_CONNECTION_IDLE_MS with GOAWAY NO_ERROR, and serves new ones', async () => {
    const raw = rawConnection(service.address);
    expect(await raw.goaway).toEqual({ code: http2.constants.NGHTTP2_NO_ERROR, data: '' });
    await raw.closed;
    await expectServing(service.channel);
  });
});

describe('connection age', () => {
  let service: TestService;

  beforeAll(async () => {
    service = await startTestService(probeModule, { GRPC_MAX_CONNECTION_AGE_MS: '200' });
  });
  afterAll(async () => {
    await service?.stop();
  });

  it('asks a connection older than GRPC_MAX_CONNECTION_AGE_MS to go away (GOAWAY NO_ERROR "max_age"), and serves new ones', async () => {
    const raw = rawConnection(service.address);
    expect(await raw.goaway).toEqual({ code: http2.constants.NGHTTP2_NO_ERROR, data: 'max_age' });
    await raw.closed;
    await eventually(() => servesOver(service.channel), 60_000, 'serving after the old connection went away');
  });
});

describe('limits in the configuration', () => {
  it('refuses a limit that is not a positive integer with a ConfigError naming the variable', () => {
    const error = (() => {
      try {
        return loadServiceConfig('analytics-svc', {
          DATABASE_URL: 'postgres://localhost/clinical',
          STATE_STORE: 'memory',
          JWT_SECRET: 'a-secret-of-at-least-thirty-two-characters',
          GRPC_MAX_METADATA_BYTES: 'lots',
          GRPC_MAX_CONNECTIONS: '0',
          GRPC_MAX_CONNECTION_AGE_MS: '1.5',
        });
      } catch (failure) {
        return failure;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.map((problem) => problem.split(':')[0])).toEqual([
      'GRPC_MAX_METADATA_BYTES',
      'GRPC_MAX_CONNECTIONS',
      'GRPC_MAX_CONNECTION_AGE_MS',
    ]);
  });
});
