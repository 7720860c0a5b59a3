import * as grpc from '@grpc/grpc-js';
import { createClient } from 'nice-grpc';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { HealthDefinition, HealthCheckResponse_ServingStatus } from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceModule } from '../server/startService.js';
import { ROLES } from '../auth/principal.js';
import { corruptRequests, sendRawRequests, SERVER_FAULTS } from './corruptRequests.js';
import { ReflectionClient } from './reflectionClient.js';
import { startTestService, type TestService } from './startTestService.js';

const { FileDescriptorProto } = descriptor;

/** One call made the way grpcurl makes it: by reflection, with JSON-like input. */
export interface ReflectedCall {
  readonly service: string;
  readonly method: string;
  readonly request: Record<string, unknown>;
  /** The status the call must end with, given a valid token. */
  readonly expectedCode: grpc.status;
  /** A call of the same service that is INVALID_ARGUMENT, and the field its violation names. */
  readonly invalid: { readonly method: string; readonly request: Record<string, unknown>; readonly field: string };
}

/** What reflection lists besides the clinical services: every other service the server registers. */
const INFRASTRUCTURE_SERVICES = ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];

/** Calls a unary method of a client built from reflection; resolves with its error, or null and the response. */
async function invokeByReflection(
  ServiceClient: grpc.ServiceClientConstructor,
  address: string,
  method: string,
  request: Record<string, unknown>,
  metadata: grpc.Metadata,
): Promise<{ error: grpc.ServiceError | null; response?: Record<string, unknown> }> {
  const client = new ServiceClient(address, grpc.credentials.createInsecure());
  type UnaryMethod = (
    request: unknown,
    metadata: grpc.Metadata,
    callback: (error: grpc.ServiceError | null, response?: Record<string, unknown>) => void,
  ) => void;
  const call = (client as unknown as Record<string, UnaryMethod>)[method]!.bind(client);
  return new Promise((resolve) => {
    call(request, metadata, (error, response) => {
      client.close();
      resolve({ error, response });
    });
  });
}

const codeOf = (outcome: { error: grpc.ServiceError | null }) => grpc.status[outcome.error?.code ?? grpc.status.OK];

/**
 * The checks every service passes after boot: health SERVING, server
 * reflection (v1 and v1alpha) listing and describing its services from a
 * client that knows nothing of them, and a call built from reflection alone,
 * refused without a token.
 */
export function serviceBootSuite(module: ServiceModule, expectedServices: readonly string[], call: ReflectedCall): void {
  describe(`${module.name} boot`, () => {
    let service: TestService;

    beforeAll(async () => {
      // The corrupt-request check below calls every method many times, the dearest ones too.
      service = await startTestService(module, { RATE_LIMIT_POINTS: '1000000' });
    });
    afterAll(async () => {
      await service?.stop();
    });

    it('reports SERVING, overall and for each service, without a token', async () => {
      const health = createClient(HealthDefinition, service.channel);
      for (const name of ['', ...expectedServices]) {
        const { status } = await health.check({ service: name });
        expect(status, name || 'overall').toBe(HealthCheckResponse_ServingStatus.SERVING);
      }
    });

    it.each(['v1', 'v1alpha'] as const)('lists and describes every service through reflection %s', async (version) => {
      const reflection = new ReflectionClient(service.address, version);
      try {
        expect(await reflection.listServices()).toEqual(expect.arrayContaining([...expectedServices]));
        for (const name of expectedServices) {
          const ServiceClient = await reflection.serviceClient(name);
          expect(Object.keys(ServiceClient.service).length, name).toBeGreaterThan(0);
          const [file] = (await reflection.fileDescriptorsFor(name)).slice(-1);
          const described = FileDescriptorProto.decode(file!) as unknown as {
            sourceCodeInfo?: { location: { leadingComments?: string }[] };
          };
          const comments = described.sourceCodeInfo?.location.filter((location) => location.leadingComments) ?? [];
          expect(comments.length, `${name}: comments travel with the descriptors`).toBeGreaterThan(10);
        }
      } finally {
        reflection.close();
      }
    });

    it('answers corrupt request bytes on every method with a status that blames the request, never a server fault', async () => {
      const token = await service.token({ sub: 'corrupt-requests', roles: [...ROLES], sites: '*' });
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${token}`);
      const reflection = new ReflectionClient(service.address);
      const faults: string[] = [];
      try {
        for (const [serviceIndex, name] of expectedServices.entries()) {
          const ServiceClient = await reflection.serviceClient(name);
          for (const [methodIndex, method] of Object.values(ServiceClient.service).entries()) {
            // Fixed seeds: a fault names the seed and the index that produce the request again.
            const seed = 1_000 * serviceIndex + methodIndex;
            const statuses = await sendRawRequests(service.address, method, corruptRequests(seed, 24), metadata);
            for (const [index, status] of statuses.entries()) {
              if (SERVER_FAULTS.has(status)) {
                faults.push(`${method.path}: ${grpc.status[status]} for corruptRequests(${seed}, 24)[${index}]`);
              }
            }
          }
        }
      } finally {
        reflection.close();
      }
      expect(faults).toEqual([]);
    }, 120_000);

    it('answers a call built from reflection alone, and refuses it without a token', async () => {
      const reflection = new ReflectionClient(service.address);
      const ServiceClient = await reflection.serviceClient(call.service);
      reflection.close();

      const token = await service.token({ sub: 'boot-check', roles: ['admin'], sites: '*' });
      const authorized = new grpc.Metadata();
      authorized.set('authorization', `Bearer ${token}`);
      expect(codeOf(await invokeByReflection(ServiceClient, service.address, call.method, call.request, authorized))).toBe(
        grpc.status[call.expectedCode],
      );
      expect(codeOf(await invokeByReflection(ServiceClient, service.address, call.method, call.request, new grpc.Metadata()))).toBe(
        'UNAUTHENTICATED',
      );
    });

    it('lists health and reflection through reflection too, and a client that knows no contracts checks health by it', async () => {
      const reflection = new ReflectionClient(service.address);
      try {
        expect(await reflection.listServices()).toEqual(expect.arrayContaining(INFRASTRUCTURE_SERVICES));
        for (const name of INFRASTRUCTURE_SERVICES) {
          expect(Object.keys((await reflection.serviceClient(name)).service).length, name).toBeGreaterThan(0);
        }
        const Health = await reflection.serviceClient('grpc.health.v1.Health');
        const checked = await invokeByReflection(Health, service.address, 'Check', { service: '' }, new grpc.Metadata());
        expect(checked.error).toBeNull();
        expect(checked.response).toEqual({ status: 'SERVING' });
      } finally {
        reflection.close();
      }
    });

    it('describes the error details it sends: a BadRequest, decoded by reflection alone, names the field', async () => {
      const reflection = new ReflectionClient(service.address);
      try {
        const ServiceClient = await reflection.serviceClient(call.service);
        const token = await service.token({ sub: 'boot-check', roles: ['admin'], sites: '*' });
        const authorized = new grpc.Metadata();
        authorized.set('authorization', `Bearer ${token}`);
        const { error } = await invokeByReflection(ServiceClient, service.address, call.invalid.method, call.invalid.request, authorized);
        expect(grpc.status[error?.code ?? grpc.status.OK]).toBe('INVALID_ARGUMENT');
        const [statusBytes] = error!.metadata.get('grpc-status-details-bin') as Buffer[];
        const StatusType = await reflection.messageType('google.rpc.Status');
        const { details } = StatusType.toObject(StatusType.decode(statusBytes!)) as { details: { type_url: string; value: Uint8Array }[] };
        const typeNames = details.map((detail) => detail.type_url.slice(detail.type_url.lastIndexOf('/') + 1));
        expect(typeNames).toContain('google.rpc.BadRequest');
        const BadRequest = await reflection.messageType('google.rpc.BadRequest');
        const badRequest = BadRequest.toObject(BadRequest.decode(details[typeNames.indexOf('google.rpc.BadRequest')]!.value)) as {
          field_violations: { field: string; description: string }[];
        };
        expect(badRequest.field_violations).toEqual(expect.arrayContaining([expect.objectContaining({ field: call.invalid.field })]));
      } finally {
        reflection.close();
      }
    });
  });
}
