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

/** Serves server reflection (v1 and v1alpha) for `serviceNames`, from the contracts' descriptor set. */
export function addReflection(server: Server, serviceNames: readonly string[]): void {
  const implementation = ServerReflection(descriptorSet, serviceNames);
  server.add(ServerReflectionService, implementation);
  server.add(ServerReflectionV1AlphaService, implementation);
}
