import * as grpc from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
// Adds Root.fromDescriptor, which builds types from descriptors alone.
import 'protobufjs/ext/descriptor/index.js';

/**
 * A minimal server-reflection client, written from the protocol
 * (grpc/reflection/v1/reflection.proto) the way grpcurl works: list services,
 * fetch file descriptors by symbol and by file name, load them, then call
 * methods knowing nothing but what reflection told.
 */
const reflectionMessages = protobuf.Root.fromJSON({
  nested: {
    ServerReflectionRequest: {
      fields: {
        host: { type: 'string', id: 1 },
        fileByFilename: { type: 'string', id: 3 },
        fileContainingSymbol: { type: 'string', id: 4 },
        listServices: { type: 'string', id: 7 },
      },
    },
    ServerReflectionResponse: {
      fields: {
        validHost: { type: 'string', id: 1 },
        fileDescriptorResponse: { type: 'FileDescriptorResponse', id: 4 },
        listServicesResponse: { type: 'ListServiceResponse', id: 6 },
        errorResponse: { type: 'ErrorResponse', id: 7 },
      },
    },
    FileDescriptorResponse: { fields: { fileDescriptorProto: { rule: 'repeated', type: 'bytes', id: 1 } } },
    ListServiceResponse: { fields: { service: { rule: 'repeated', type: 'ServiceResponse', id: 1 } } },
    ServiceResponse: { fields: { name: { type: 'string', id: 1 } } },
    ErrorResponse: { fields: { errorCode: { type: 'int32', id: 1 }, errorMessage: { type: 'string', id: 2 } } },
  },
});
const RequestType = reflectionMessages.lookupType('ServerReflectionRequest');
const ResponseType = reflectionMessages.lookupType('ServerReflectionResponse');
const FileDescriptorProtoName = protobuf.Root.fromJSON({
  nested: { FileDescriptorProto: { fields: { name: { type: 'string', id: 1 }, dependency: { rule: 'repeated', type: 'string', id: 3 } } } },
}).lookupType('FileDescriptorProto');

interface ReflectionResponse {
  fileDescriptorResponse?: { fileDescriptorProto: Uint8Array[] };
  listServicesResponse?: { service: { name: string }[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

export class ReflectionClient {
  private readonly client: grpc.Client;

  constructor(
    private readonly address: string,
    private readonly version: 'v1' | 'v1alpha' = 'v1',
    credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  ) {
    this.client = new grpc.Client(address, credentials);
  }

  close(): void {
    this.client.close();
  }

  private ask(request: Record<string, string>): Promise<ReflectionResponse> {
    return new Promise((resolve, reject) => {
      const call = this.client.makeBidiStreamRequest(
        `/grpc.reflection.${this.version}.ServerReflection/ServerReflectionInfo`,
        (message: Record<string, string>) => Buffer.from(RequestType.encode(RequestType.fromObject(message)).finish()),
        (bytes: Buffer) => ResponseType.toObject(ResponseType.decode(bytes), { defaults: false }) as ReflectionResponse,
      );
      call.on('data', (response: ReflectionResponse) => {
        call.end();
        if (response.errorResponse) {
          reject(new Error(`reflection error ${response.errorResponse.errorCode}: ${response.errorResponse.errorMessage}`));
        } else {
          resolve(response);
        }
      });
      call.on('error', reject);
      call.write(request);
    });
  }

  async listServices(): Promise<string[]> {
    const response = await this.ask({ listServices: '' });
    return (response.listServicesResponse?.service ?? []).map((service) => service.name);
  }

  /** The encoded FileDescriptorProtos defining `symbol`, with all their dependencies, dependencies first. */
  async fileDescriptorsFor(symbol: string): Promise<Uint8Array[]> {
    const byName = new Map<string, Uint8Array>();
    const ordered: Uint8Array[] = [];
    const visit = async (files: Uint8Array[]): Promise<void> => {
      for (const bytes of files) {
        const { name, dependency } = FileDescriptorProtoName.decode(bytes) as unknown as { name: string; dependency: string[] };
        if (byName.has(name)) {
          continue;
        }
        byName.set(name, bytes);
        for (const dependencyName of dependency) {
          if (!byName.has(dependencyName)) {
            const response = await this.ask({ fileByFilename: dependencyName });
            await visit(response.fileDescriptorResponse?.fileDescriptorProto ?? []);
          }
        }
        ordered.push(bytes);
      }
    };
    const response = await this.ask({ fileContainingSymbol: symbol });
    await visit(response.fileDescriptorResponse?.fileDescriptorProto ?? []);
    return ordered;
  }

  /** The encoded FileDescriptorSet defining `symbol`, with its dependencies. */
  private async fileDescriptorSetFor(symbol: string): Promise<Buffer> {
    // A FileDescriptorSet is field 1 repeated: each file as a length-delimited record.
    const writer = protobuf.Writer.create();
    for (const file of await this.fileDescriptorsFor(symbol)) {
      writer.uint32(10).bytes(file);
    }
    return Buffer.from(writer.finish());
  }

  /** A message type (e.g. one named by an error detail's type URL), built from reflection alone. */
  async messageType(name: string): Promise<protobuf.Type> {
    const root = (protobuf.Root as unknown as { fromDescriptor(set: Uint8Array): protobuf.Root }).fromDescriptor(
      await this.fileDescriptorSetFor(name),
    );
    return root.lookupType(name);
  }

  /** A grpc-js client constructor for `service`, built from reflection alone. */
  async serviceClient(service: string): Promise<grpc.ServiceClientConstructor> {
    const definition = loadFileDescriptorSetFromBuffer(await this.fileDescriptorSetFor(service), {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
    });
    const loaded = grpc.loadPackageDefinition(definition);
    return service.split('.').reduce<unknown>((node, part) => (node as grpc.GrpcObject)[part], loaded) as grpc.ServiceClientConstructor;
  }

  get target(): string {
    return this.address;
  }
}
