import { descriptorSet } from '@clinical/contracts';
import type { Server } from 'nice-grpc';
import { ServerReflection, ServerReflectionService } from 'nice-grpc-server-reflection';

/**
 * The same service under grpc.reflection.v1alpha: identical messages, older
 * name. grpcurl and other tools still ask for v1alpha first or only.
 */
const ServerReflectionV1AlphaService = Object.fromEntries(
  Object.entries(ServerReflectionService).map(([key, method]) => [
    key,
    { ...method, path: method.path.replace('grpc.reflection.v1.', 'grpc.reflection.v1alpha.') },
  ]),
) as typeof ServerReflectionService;

/** What every server registers besides its own services: they need no token, and reflection lists them too. */
const INFRASTRUCTURE_SERVICES = ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];

/**
 * Serves server reflection (v1 and v1alpha) for `serviceNames` and the
 * health and reflection services, from the contracts' descriptor set, which
 * also describes the google.rpc error details the server sends (so that
 * grpcurl prints a BadRequest's field violations).
 */
export function addReflection(server: Server, serviceNames: readonly string[]): void {
  const implementation = ServerReflection(descriptorSet, [...serviceNames, ...INFRASTRUCTURE_SERVICES]);
  server.add(ServerReflectionService, implementation);
  server.add(ServerReflectionV1AlphaService, implementation);
}
