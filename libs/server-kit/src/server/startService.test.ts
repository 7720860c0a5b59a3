import { analyticsV1 } from '@clinical/contracts';
import { InvalidArgumentError, ResourceExhaustedError } from '@clinical/errors';
import { eventually } from '@clinical/testing';
import { ClientError, createClient, createClientFactory, Metadata, Status } from 'nice-grpc';
import { errorDetailsClientMiddleware, RetryInfo, RichClientError } from 'nice-grpc-error-details';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../config/loadConfig.js';
import { sendRawRequests } from '../testing/corruptRequests.js';
import { startTestService, type TestService } from '../testing/startTestService.js';
import { defineService } from './defineService.js';
import { notYetServed } from './notYetServed.js';
import type { ServiceModule } from './startService.js';

/**
 * Calls to site 'held' wait until the test releases them (or their caller
 * gives up). The test learns when they are inside the handler, so that it
 * never has to guess how long admission takes on a busy machine.
 */
const heldCalls = {
  release: () => {},
  gate: Promise.resolve(),
  inside: 0,
  changed: () => {},
  close() {
    this.gate = new Promise<void>((resolve) => {
      this.release = resolve;
    });
  },
  async hold(signal: AbortSignal) {
    this.inside += 1;
    this.changed();
    try {
      await Promise.race([this.gate, new Promise((resolve) => signal.addEventListener('abort', resolve))]);
    } finally {
      this.inside -= 1;
      this.changed();
    }
  },
  /** Resolves once `count` held calls are inside the handler. */
  whenInside(count: number): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.inside >= count) {
          this.changed = () => {};
          resolve();
        }
      };
      this.changed = check;
      check();
    });
  },
};

/** A service whose handler misbehaves on demand, to exercise the kit's edges. */
const probeModule: ServiceModule = {
  name: 'analytics-svc',
  createServices: () => [
    defineService(
      analyticsV1.AnalyticsServiceDefinition,
      {
        async getSiteAnalytics(request, context) {
          switch (request.siteId) {
            case 'held':
              await heldCalls.hold(context.signal);
              return analyticsV1.GetSiteAnalyticsResponse.fromPartial({});
            case 'invalid':
              throw new InvalidArgumentError([{ field: 'site_id', description: 'is not a site' }]);
            case 'exhausted':
              throw new ResourceExhaustedError('rate limit exceeded', 1_500);
            case 'fault':
              throw new Error('patient Jane Doe, born 1970-01-01, broke it');
            default:
              return analyticsV1.GetSiteAnalyticsResponse.fromPartial({});
          }
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

/** The probe with a RefreshAnalytics that costs 10. */
const costlyRefresh: ServiceModule = {
  ...probeModule,
  createServices: (runtime) =>
    (probeModule.createServices(runtime) as ReturnType<typeof defineService>[]).map((binding) => ({
      ...binding,
      policies: new Map([...binding.policies].map(([path, policy]) => [path, path.endsWith('/RefreshAnalytics') ? { ...policy, cost: 10 } : policy])),
    })),
};

describe('the rate limit against the cost of each method', () => {
  it('refuses to start (a configuration error naming the variable and the method) when one call costs more than a window holds', async () => {
    const error = await startTestService(costlyRefresh, { RATE_LIMIT_POINTS: '5' }).catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      'RATE_LIMIT_POINTS: 5 is less than what one call of /clinical.analytics.v1.AnalyticsService/RefreshAnalytics costs',
    ]);
  });
});

describe('the edge: errors become statuses with details', () => {
  let service: TestService;
  let token: string;

  beforeAll(async () => {
    // Redis gets time to answer on a loaded machine: a command that timed out would be counted by the
    // in-process fallback limiter instead, which admits its own 5, and the count below would not hold.
    service = await startTestService(probeModule, { RATE_LIMIT_POINTS: '5', REDIS_COMMAND_TIMEOUT_MS: '5000' });
    token = await service.token({ sub: 'edge-tester', roles: ['monitor'], sites: '*' });
  });
  afterAll(async () => {
    await service?.stop();
  });

  it('maps a domain error to its code with BadRequest details', async () => {
    const client = createClientFactory()
      .use(errorDetailsClientMiddleware)
      .create(analyticsV1.AnalyticsServiceDefinition, service.channel);
    const error = await client
      .getSiteAnalytics({ siteId: 'invalid', protocolId: 'p' }, { metadata: authorization(token) })
      .catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(RichClientError);
    expect((error as RichClientError).code).toBe(Status.INVALID_ARGUMENT);
    expect((error as RichClientError).extra).toEqual([
      expect.objectContaining({ $type: 'google.rpc.BadRequest', fieldViolations: [expect.objectContaining({ field: 'site_id' })] }),
    ]);
  });

  it('answers a server fault with a bare INTERNAL that leaks nothing', async () => {
    const client = service.client(analyticsV1.AnalyticsServiceDefinition, token);
    const error = (await client.getSiteAnalytics({ siteId: 'fault', protocolId: 'p' }).catch((failure: unknown) => failure)) as ClientError;
    expect(error.code).toBe(Status.INTERNAL);
    expect(error.details).toBe('internal error');
  });

  it('refuses callers over their rate with RESOURCE_EXHAUSTED and a retry delay', async () => {
    const client = createClientFactory()
      .use(errorDetailsClientMiddleware)
      .create(analyticsV1.AnalyticsServiceDefinition, service.channel);
    const heavy = await service.token({ sub: 'heavy-caller', roles: ['monitor'], sites: '*' });
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, () =>
        client.getSiteAnalytics({ siteId: 'ok', protocolId: 'p' }, { metadata: authorization(heavy) }).then(
          () => 'ok',
          (failure: unknown) => failure,
        ),
      ),
    );
    expect(outcomes.filter((outcome) => outcome === 'ok')).toHaveLength(5);
    const refused = outcomes.find((outcome) => outcome instanceof RichClientError) as RichClientError;
    expect(refused.code).toBe(Status.RESOURCE_EXHAUSTED);
    const retry = refused.extra.find((detail) => detail.$type === 'google.rpc.RetryInfo') as RetryInfo;
    expect(Number(retry.retryDelay?.seconds ?? 0) * 1_000 + (retry.retryDelay?.nanos ?? 0) / 1e6).toBeGreaterThan(0);
  });

  it('answers bytes that are not the request message with INVALID_ARGUMENT, not INTERNAL', async () => {
    const grpc = await import('@grpc/grpc-js');
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    const [code] = await sendRawRequests(
      service.address,
      { path: '/clinical.analytics.v1.AnalyticsService/GetSiteAnalytics', requestStream: false },
      // Field 1 as a length-delimited string claiming 100 bytes, then nothing.
      [Uint8Array.from([0x0a, 0x64, 0x41])],
      metadata,
    );
    expect(Status[code!]).toBe('INVALID_ARGUMENT');
  });

  it('refuses a role the method does not allow', async () => {
    const auditor = await service.token({ sub: 'auditor', roles: ['auditor'], sites: '*' });
    const error = (await service
      .client(analyticsV1.AnalyticsServiceDefinition, auditor)
      .getSiteAnalytics({ siteId: 'ok', protocolId: 'p' })
      .catch((failure: unknown) => failure)) as ClientError;
    expect(error.code).toBe(Status.PERMISSION_DENIED);
  });
});

describe('load shedding', () => {
  /** Repeats `call` until its outcome is `wanted` (at most 60 s), and returns that outcome. */
  async function repeatUntil(call: () => Promise<unknown>, wanted: (outcome: unknown) => boolean): Promise<unknown> {
    const { outcome } = await eventually(
      async () => {
        const outcome = await call().catch((failure: unknown) => failure);
        return wanted(outcome) ? { outcome } : undefined;
      },
      60_000,
      'the wanted outcome',
    );
    return outcome;
  }
  const refusal = (outcome: unknown) => outcome instanceof ClientError;

  /**
   * Starts held calls until `count` are inside the handler. A call may be shed
   * because a finished call's place is given back only after its caller has
   * the response: such a call is started again.
   */
  async function holdCalls(count: number, start: () => Promise<unknown>): Promise<Promise<unknown>[]> {
    const held: Promise<unknown>[] = [];
    const inside = heldCalls.whenInside(count);
    const admitOne = (): Promise<unknown> =>
      start().catch((failure: unknown) => {
        if (failure instanceof ClientError && failure.code === Status.UNAVAILABLE && heldCalls.inside < count) {
          return admitOne();
        }
        throw failure;
      });
    for (let index = 0; index < count; index += 1) {
      held.push(admitOne());
    }
    await inside;
    return held;
  }

  it('refuses calls past MAX_IN_FLIGHT_COST with UNAVAILABLE and a retry delay, keeps answering health checks, and serves again once calls finish', async () => {
    const service = await startTestService(probeModule, { MAX_IN_FLIGHT_COST: '2' });
    heldCalls.close();
    try {
      const token = await service.token({ sub: 'shedding-tester', roles: ['monitor'], sites: '*' });
      const client = createClientFactory()
        .use(errorDetailsClientMiddleware)
        .create(analyticsV1.AnalyticsServiceDefinition, service.channel);
      const call = (siteId: string) => client.getSiteAnalytics({ siteId, protocolId: 'p' }, { metadata: authorization(token) });
      const held = await holdCalls(2, () => call('held'));

      // Both held calls are in: the next one is refused.
      const refused = (await call('ok').catch((failure: unknown) => failure)) as RichClientError;
      expect(refused).toBeInstanceOf(RichClientError);
      expect(refused.code).toBe(Status.UNAVAILABLE);
      const retry = refused.extra.find((detail) => detail.$type === 'google.rpc.RetryInfo') as RetryInfo;
      expect(retry.retryDelay?.nanos).toBe(200_000_000);
      expect((await createClient(HealthDefinition, service.channel).check({ service: '' })).status).toBe(
        HealthCheckResponse_ServingStatus.SERVING,
      );

      heldCalls.release();
      await Promise.all(held);
      // A finished call gives its place back just after its caller has the response.
      await expect(repeatUntil(() => call('ok'), (outcome) => !refusal(outcome))).resolves.toBeDefined();
    } finally {
      heldCalls.release();
      await service.stop();
    }
  });

  it('frees the place of a call that failed and of a call its caller cancelled', async () => {
    const service = await startTestService(probeModule, { MAX_IN_FLIGHT_COST: '1' });
    heldCalls.close();
    try {
      const client = service.client(analyticsV1.AnalyticsServiceDefinition, await service.token({ sub: 'one-at-a-time', roles: ['monitor'], sites: '*' }));
      for (const siteId of ['invalid', 'fault', 'ok']) {
        await client.getSiteAnalytics({ siteId, protocolId: 'p' }).catch(() => undefined);
      }
      // The failed calls gave their places back: a held call gets in, and then nothing else does.
      const abandoned = new AbortController();
      const [held] = await holdCalls(1, () => client.getSiteAnalytics({ siteId: 'held', protocolId: 'p' }, { signal: abandoned.signal }));
      const ok = () => client.getSiteAnalytics({ siteId: 'ok', protocolId: 'p' });
      expect(((await ok().catch((failure: unknown) => failure)) as ClientError).code).toBe(Status.UNAVAILABLE);
      abandoned.abort();
      await held!.catch(() => undefined);
      // The server learns of the cancellation shortly after the client does.
      await expect(repeatUntil(ok, (outcome) => !refusal(outcome))).resolves.toBeDefined();
    } finally {
      heldCalls.release();
      await service.stop();
    }
  });

  it('refuses to start when one call costs more than MAX_IN_FLIGHT_COST', async () => {
    const error = await startTestService(costlyRefresh, { MAX_IN_FLIGHT_COST: '5' }).catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      'MAX_IN_FLIGHT_COST: 5 is less than what one call of /clinical.analytics.v1.AnalyticsService/RefreshAnalytics costs',
    ]);
  });
});

describe('graceful shutdown', () => {
  it('reports NOT_SERVING while draining, finishes in-flight calls, then stops', async () => {
    const service = await startTestService(probeModule, { SHUTDOWN_DRAIN_MS: '2000', SHUTDOWN_GRACE_MS: '60000' });
    heldCalls.close();
    try {
      const token = await service.token({ sub: 'shutdown-tester', roles: ['monitor'], sites: '*' });
      const client = service.client(analyticsV1.AnalyticsServiceDefinition, token);
      const health = createClient(HealthDefinition, service.channel);

      const inside = heldCalls.whenInside(1);
      const inFlight = client.getSiteAnalytics({ siteId: 'held', protocolId: 'p' });
      await inside;
      const stopped = service.stop();
      expect((await health.check({ service: '' })).status).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
      heldCalls.release();
      await expect(inFlight).resolves.toBeDefined();
      await stopped;
    } finally {
      heldCalls.release();
    }
  });
});

function authorization(token: string) {
  return Metadata({ authorization: `Bearer ${token}` });
}
