#!/usr/bin/env node
/**
 * A stand-in for grpcurl (https://github.com/fullstorydev/grpcurl), for the
 * README walkthrough's test on machines where grpcurl itself cannot be
 * installed. It knows nothing of the services but what server reflection
 * (grpc.reflection.v1) tells, as grpcurl, and implements the subset the
 * walkthrough uses, with grpcurl's output and exit codes:
 *
 *   grpcurl -plaintext [-H 'name: value']... [-d '<json>' | -d @] [-emit-defaults] host:port list [service]
 *   grpcurl -plaintext host:port describe [symbol]
 *   grpcurl -plaintext [-H ...] [-d ...] host:port package.Service/Method
 *
 * Requests and responses in the proto3 JSON mapping (lowerCamelCase or
 * original field names in, lowerCamelCase out, 2-space indent; well-known
 * types as their JSON forms); `-d @` reads the request messages from standard
 * input, several JSON objects one after another for a client stream. A failed
 * call prints "ERROR:\n  Code: ...\n  Message: ..." on standard error and
 * exits 64 + the status code, as grpcurl does.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import descriptorExtension from 'protobufjs/ext/descriptor/index.js';

const STATUS_NAMES = [
  'OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied',
  'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable',
  'DataLoss', 'Unauthenticated',
];

class UsageError extends Error {}

function fail(message, code = 1) {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

// ---------------------------------------------------------------- arguments

function parseArguments(argv) {
  const options = { plaintext: false, headers: [], data: undefined, emitDefaults: false, positional: [] };
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index];
    const value = () => {
      if (index + 1 >= argv.length) {
        throw new UsageError(`Flag ${argument} needs a value`);
      }
      index += 1;
      return argv[index];
    };
    if (argument === '-plaintext' || argument === '--plaintext') {
      options.plaintext = true;
    } else if (argument === '-H' || argument === '-rpc-header' || argument === '-reflect-header') {
      options.headers.push(value());
    } else if (argument === '-d') {
      options.data = value();
    } else if (argument === '-emit-defaults') {
      options.emitDefaults = true;
    } else if (argument.startsWith('-') && argument !== '-') {
      throw new UsageError(`Unsupported flag (grpcurl stand-in): ${argument}`);
    } else {
      options.positional.push(argument);
    }
  }
  if (!options.plaintext) {
    throw new UsageError('This grpcurl stand-in supports -plaintext only');
  }
  return options;
}

// ---------------------------------------------------------------- reflection

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
const ReflectionRequest = reflectionMessages.lookupType('ServerReflectionRequest');
const ReflectionResponse = reflectionMessages.lookupType('ServerReflectionResponse');
const FileDescriptorProto = descriptorExtension.FileDescriptorProto;
const FileDescriptorSet = descriptorExtension.FileDescriptorSet;

class Reflection {
  constructor(client, metadata) {
    this.client = client;
    this.metadata = metadata;
    this.files = new Map();
  }

  ask(request) {
    return new Promise((resolve, reject) => {
      const call = this.client.makeBidiStreamRequest(
        '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
        (message) => Buffer.from(ReflectionRequest.encode(ReflectionRequest.fromObject(message)).finish()),
        (bytes) => ReflectionResponse.toObject(ReflectionResponse.decode(bytes)),
        this.metadata,
      );
      call.on('data', (response) => {
        call.end();
        if (response.errorResponse) {
          reject(Object.assign(new Error(response.errorResponse.errorMessage), { reflectionCode: response.errorResponse.errorCode }));
        } else {
          resolve(response);
        }
      });
      call.on('error', reject);
      call.write(request);
    });
  }

  async listServices() {
    const response = await this.ask({ listServices: '' });
    return (response.listServicesResponse?.service ?? []).map((service) => service.name).sort();
  }

  async load(files) {
    for (const bytes of files) {
      const file = FileDescriptorProto.decode(bytes);
      if (this.files.has(file.name)) {
        continue;
      }
      this.files.set(file.name, undefined);
      for (const dependency of file.dependency) {
        if (!this.files.has(dependency)) {
          await this.load((await this.ask({ fileByFilename: dependency })).fileDescriptorResponse?.fileDescriptorProto ?? []);
        }
      }
      this.files.delete(file.name);
      this.files.set(file.name, file);
    }
  }

  /** A protobufjs root holding `symbol` and everything it needs. */
  async rootFor(symbol) {
    let response;
    try {
      response = await this.ask({ fileContainingSymbol: symbol });
    } catch (error) {
      if (error.reflectionCode === grpc.status.NOT_FOUND) {
        throw new UsageError(`Symbol "${symbol}" not found`);
      }
      throw error;
    }
    await this.load(response.fileDescriptorResponse?.fileDescriptorProto ?? []);
    return this.root();
  }

  root() {
    const set = FileDescriptorSet.create({ file: [...this.files.values()] });
    const root = protobuf.Root.fromDescriptor(set);
    root.resolveAll();
    return root;
  }
}

// ---------------------------------------------------------------- proto3 JSON

const INT64 = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const WRAPPERS = new Set(
  ['DoubleValue', 'FloatValue', 'Int64Value', 'UInt64Value', 'Int32Value', 'UInt32Value', 'BoolValue', 'StringValue', 'BytesValue'].map(
    (name) => `google.protobuf.${name}`,
  ),
);

/** An int64 as a number, whether decoded as a Long, a string or a number. */
const toNumber = (value) => Number(typeof value === 'object' && value !== null ? value.toString() : value);
const fullName = (type) => type.fullName.replace(/^\./, '');
/**
 * Whether `field` is a map: protobufjs's Root.fromDescriptor leaves a map as
 * the repeated `...Entry` message (key = 1, value = 2) the descriptor has.
 */
const isMapField = (field) =>
  field.map ||
  (field.repeated &&
    field.resolvedType instanceof protobuf.Type &&
    field.resolvedType.name.endsWith('Entry') &&
    field.resolvedType.fieldsArray.length === 2 &&
    field.resolvedType.fields.key?.id === 1 &&
    field.resolvedType.fields.value?.id === 2);
/** A map field's entries, as `[key, value, valueField]`, whichever way protobufjs holds them. */
const mapEntries = (field, value) =>
  field.map
    ? Object.entries(value ?? {}).map(([key, entry]) => [key, entry, field])
    : (value ?? []).map((entry) => [String(entry.key), entry.value ?? defaultOf(field.resolvedType.fields.value), field.resolvedType.fields.value]);
const defaultOf = (field) => (field.resolvedType instanceof protobuf.Type ? {} : field.typeDefault);
const jsonNameOf = (field) => field.name.replace(/_([a-z0-9])/g, (_, letter) => letter.toUpperCase());

function scalarToJson(value, field) {
  if (field.resolvedType instanceof protobuf.Enum) {
    return field.resolvedType.valuesById[value] ?? value;
  }
  if (INT64.has(field.type)) {
    return String(value);
  }
  if (field.type === 'bytes') {
    return Buffer.from(value).toString('base64');
  }
  if ((field.type === 'double' || field.type === 'float') && !Number.isFinite(value)) {
    return Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity';
  }
  return value;
}

function isDefault(value, field) {
  if (field.resolvedType instanceof protobuf.Type) {
    return value === null || value === undefined;
  }
  if (INT64.has(field.type)) {
    return String(value) === '0';
  }
  if (field.type === 'bytes') {
    return value.length === 0;
  }
  return value === 0 || value === '' || value === false;
}

function valueToJson(value, field, emitDefaults) {
  return field.resolvedType instanceof protobuf.Type ? messageToJson(value, field.resolvedType, emitDefaults) : scalarToJson(value, field);
}

function pad(nanos) {
  if (nanos === 0) {
    return '';
  }
  const digits = String(nanos).padStart(9, '0');
  return `.${digits.endsWith('000000') ? digits.slice(0, 3) : digits.endsWith('000') ? digits.slice(0, 6) : digits}`;
}

function messageToJson(message, type, emitDefaults) {
  switch (fullName(type)) {
    case 'google.protobuf.Timestamp': {
      const date = new Date(toNumber(message.seconds) * 1000).toISOString().slice(0, 19);
      return `${date}${pad(message.nanos ?? 0)}Z`;
    }
    case 'google.protobuf.Duration': {
      const seconds = toNumber(message.seconds);
      const nanos = message.nanos ?? 0;
      const negative = seconds < 0 || nanos < 0;
      return `${negative ? '-' : ''}${Math.abs(seconds)}${pad(Math.abs(nanos))}s`;
    }
    case 'google.protobuf.Struct':
      return Object.fromEntries(mapEntries(type.fields.fields, message.fields).map(([key, value]) => [key, structValueToJson(value)]));
    case 'google.protobuf.Value':
      return structValueToJson(message);
    case 'google.protobuf.ListValue':
      return (message.values ?? []).map(structValueToJson);
    case 'google.protobuf.FieldMask':
      return (message.paths ?? []).map((path) => path.replace(/_([a-z0-9])/g, (_, letter) => letter.toUpperCase())).join(',');
    case 'google.protobuf.Empty':
      return {};
    default:
      if (WRAPPERS.has(fullName(type))) {
        return scalarToJson(message.value, type.fields.value);
      }
  }
  const json = {};
  for (const field of [...type.fieldsArray].sort((a, b) => a.id - b.id)) {
    const value = message[field.name];
    const present = Object.prototype.hasOwnProperty.call(message, field.name);
    if (isMapField(field)) {
      const entries = mapEntries(field, value);
      if (entries.length > 0 || emitDefaults) {
        json[jsonNameOf(field)] = Object.fromEntries(entries.map(([key, entry, valueField]) => [key, valueToJson(entry, valueField, emitDefaults)]));
      }
    } else if (field.repeated) {
      if ((value ?? []).length > 0 || emitDefaults) {
        json[jsonNameOf(field)] = (value ?? []).map((item) => valueToJson(item, field, emitDefaults));
      }
    } else if (field.partOf || field.resolvedType instanceof protobuf.Type) {
      // Fields with presence: oneof members, proto3 optional, messages.
      if (present && value !== null && value !== undefined) {
        json[jsonNameOf(field)] = valueToJson(value, field, emitDefaults);
      } else if (emitDefaults && !field.partOf) {
        json[jsonNameOf(field)] = null;
      }
    } else if (!isDefault(value, field) || emitDefaults) {
      json[jsonNameOf(field)] = valueToJson(value ?? field.typeDefault, field, emitDefaults);
    }
  }
  return json;
}

function structValueToJson(value) {
  const has = (name) => Object.prototype.hasOwnProperty.call(value, name) && value[name] !== null && value[name] !== undefined;
  if (has('number_value')) {
    return value.number_value;
  }
  if (has('string_value')) {
    return value.string_value;
  }
  if (has('bool_value')) {
    return value.bool_value;
  }
  if (has('struct_value')) {
    const { fields } = value.struct_value;
    const entries = Array.isArray(fields) ? fields.map((entry) => [entry.key, entry.value]) : Object.entries(fields ?? {});
    return Object.fromEntries(entries.map(([key, item]) => [key, structValueToJson(item)]));
  }
  if (has('list_value')) {
    return (value.list_value.values ?? []).map(structValueToJson);
  }
  return null;
}

function structValueFromJson(json) {
  if (json === null) {
    return { null_value: 0 };
  }
  if (Array.isArray(json)) {
    return { list_value: { values: json.map(structValueFromJson) } };
  }
  switch (typeof json) {
    case 'number':
      return { number_value: json };
    case 'string':
      return { string_value: json };
    case 'boolean':
      return { bool_value: json };
    default:
      return { struct_value: { fields: Object.entries(json).map(([key, item]) => ({ key, value: structValueFromJson(item) })) } };
  }
}

function splitSeconds(text, what) {
  const match = /^(-)?(\d+)(?:\.(\d{1,9}))?$/.exec(text);
  if (!match) {
    throw new UsageError(`bad ${what}: ${text}`);
  }
  const sign = match[1] ? -1 : 1;
  return { seconds: sign * Number(match[2]), nanos: sign * Number((match[3] ?? '').padEnd(9, '0')) };
}

function messageFromJson(json, type) {
  switch (fullName(type)) {
    case 'google.protobuf.Timestamp': {
      const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(String(json));
      if (!match) {
        throw new UsageError(`bad Timestamp: ${JSON.stringify(json)}`);
      }
      const millis = Date.parse(`${match[1]}${match[3]}`);
      return { seconds: Math.floor(millis / 1000), nanos: Number((match[2] ?? '').padEnd(9, '0')) };
    }
    case 'google.protobuf.Duration':
      return splitSeconds(String(json).replace(/s$/, ''), 'Duration');
    case 'google.protobuf.Struct':
      return { fields: Object.entries(json).map(([key, item]) => ({ key, value: structValueFromJson(item) })) };
    case 'google.protobuf.Value':
      return structValueFromJson(json);
    case 'google.protobuf.ListValue':
      return { values: json.map(structValueFromJson) };
    case 'google.protobuf.FieldMask':
      return { paths: String(json).split(',').filter(Boolean).map((path) => path.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)) };
    default:
      if (WRAPPERS.has(fullName(type))) {
        return { value: json };
      }
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new UsageError(`message type ${fullName(type)} expects a JSON object`);
  }
  const object = {};
  for (const [key, value] of Object.entries(json)) {
    const field = type.fieldsArray.find((candidate) => candidate.name === key || jsonNameOf(candidate) === key);
    if (!field) {
      throw new UsageError(`message type ${fullName(type)} has no known field named ${key}`);
    }
    if (value === null) {
      continue;
    }
    const convert = (item) => (field.resolvedType instanceof protobuf.Type ? messageFromJson(item, field.resolvedType) : item);
    if (field.map) {
      object[field.name] = Object.fromEntries(Object.entries(value).map(([mapKey, item]) => [mapKey, convert(item)]));
    } else if (isMapField(field)) {
      const valueField = field.resolvedType.fields.value;
      const convertValue = (item) => (valueField.resolvedType instanceof protobuf.Type ? messageFromJson(item, valueField.resolvedType) : item);
      object[field.name] = Object.entries(value).map(([key, item]) => ({ key, value: convertValue(item) }));
    } else if (field.repeated) {
      object[field.name] = value.map(convert);
    } else {
      object[field.name] = convert(value);
    }
  }
  return object;
}

/** The JSON values in `text`, one after another (whitespace between them optional), as grpcurl reads -d. */
function jsonMessages(text) {
  const messages = [];
  let index = 0;
  const skipSpace = () => {
    while (index < text.length && /\s/.test(text[index])) {
      index += 1;
    }
  };
  skipSpace();
  while (index < text.length) {
    const start = index;
    let depth = 0;
    let inString = false;
    for (; index < text.length; index += 1) {
      const character = text[index];
      if (inString) {
        if (character === '\\') {
          index += 1;
        } else if (character === '"') {
          inString = false;
        }
      } else if (character === '"') {
        inString = true;
      } else if (character === '{' || character === '[') {
        depth += 1;
      } else if (character === '}' || character === ']') {
        depth -= 1;
        if (depth === 0) {
          index += 1;
          break;
        }
      }
    }
    const chunk = text.slice(start, index);
    try {
      messages.push(JSON.parse(chunk));
    } catch (error) {
      throw new UsageError(`error getting request data: ${error.message}`);
    }
    skipSpace();
  }
  return messages;
}

// ---------------------------------------------------------------- describe

function typeName(field) {
  if (field.resolvedType) {
    return `.${fullName(field.resolvedType)}`;
  }
  return field.type;
}

function fieldOptions(field) {
  const behaviors = field.options?.['(google.api.field_behavior)'];
  if (behaviors === undefined) {
    return '';
  }
  return ` [(.google.api.field_behavior) = ${[].concat(behaviors).join(', ')}]`;
}

function describeType(type, indent = '') {
  const lines = [`${indent}message ${type.name} {`];
  for (const field of [...type.fieldsArray].sort((a, b) => a.id - b.id)) {
    const label = field.map ? '' : field.repeated ? 'repeated ' : field.options?.proto3_optional || (field.partOf && field.partOf.name.startsWith('_')) ? 'optional ' : '';
    const kind = field.map ? `map<${field.keyType}, ${typeName(field)}>` : typeName(field);
    lines.push(`${indent}  ${label}${kind} ${field.name} = ${field.id}${fieldOptions(field)};`);
  }
  for (const nested of type.nestedArray) {
    if (nested instanceof protobuf.Type && !nested.options?.map_entry) {
      lines.push(describeType(nested, `${indent}  `));
    } else if (nested instanceof protobuf.Enum) {
      lines.push(describeEnum(nested, `${indent}  `));
    }
  }
  lines.push(`${indent}}`);
  return lines.join('\n');
}

function describeEnum(enumeration, indent = '') {
  return [
    `${indent}enum ${enumeration.name} {`,
    ...Object.entries(enumeration.values).map(([name, id]) => `${indent}  ${name} = ${id};`),
    `${indent}}`,
  ].join('\n');
}

function describeService(service) {
  return [
    `service ${service.name} {`,
    ...service.methodsArray.map(
      (method) =>
        `  rpc ${method.name} ( ${method.requestStream ? 'stream ' : ''}.${fullName(method.resolvedRequestType)} ) returns ( ${
          method.responseStream ? 'stream ' : ''
        }.${fullName(method.resolvedResponseType)} );`,
    ),
    '}',
  ].join('\n');
}

function describe(symbol, root) {
  const found = root.lookup(symbol);
  if (found instanceof protobuf.Service) {
    return `${symbol} is a service:\n${describeService(found)}`;
  }
  if (found instanceof protobuf.Type) {
    return `${symbol} is a message:\n${describeType(found)}`;
  }
  if (found instanceof protobuf.Enum) {
    return `${symbol} is an enum:\n${describeEnum(found)}`;
  }
  const dot = symbol.lastIndexOf('.');
  const service = dot > 0 ? root.lookup(symbol.slice(0, dot)) : null;
  if (service instanceof protobuf.Service && service.methods[symbol.slice(dot + 1)]) {
    const method = service.methods[symbol.slice(dot + 1)];
    return `${symbol} is a method:\nrpc ${method.name} ( ${method.requestStream ? 'stream ' : ''}.${fullName(method.resolvedRequestType)} ) returns ( ${
      method.responseStream ? 'stream ' : ''
    }.${fullName(method.resolvedResponseType)} );`;
  }
  throw new UsageError(`Symbol "${symbol}" not found`);
}

// ---------------------------------------------------------------- calls

function statusError(error) {
  const code = typeof error.code === 'number' ? error.code : grpc.status.UNKNOWN;
  process.stderr.write(`ERROR:\n  Code: ${STATUS_NAMES[code] ?? code}\n  Message: ${error.details ?? error.message}\n`);
  process.exit(64 + code);
}

async function readData(data) {
  if (data === undefined) {
    return [{}];
  }
  const text = data === '@' ? readFileSync(0, 'utf8') : data;
  return jsonMessages(text);
}

async function invoke(client, reflection, target, metadata, options) {
  const slash = target.includes('/') ? target.lastIndexOf('/') : target.lastIndexOf('.');
  const serviceName = target.slice(0, slash);
  const methodName = target.slice(slash + 1);
  const root = await reflection.rootFor(serviceName);
  const service = root.lookup(serviceName);
  const method = service instanceof protobuf.Service ? service.methods[methodName] : undefined;
  if (!method) {
    throw new UsageError(`service "${serviceName}" does not include a method named "${methodName}"`);
  }
  const requestType = method.resolvedRequestType;
  const responseType = method.resolvedResponseType;
  let requests;
  try {
    requests = (await readData(options.data)).map((json) => requestType.fromObject(messageFromJson(json, requestType)));
  } catch (error) {
    throw new UsageError(`Error invoking method "${target}": error getting request data: ${error.message}`);
  }
  const path = `/${serviceName}/${methodName}`;
  const serialize = (message) => Buffer.from(requestType.encode(message).finish());
  const deserialize = (bytes) => responseType.decode(bytes);
  const print = (response) => process.stdout.write(`${JSON.stringify(messageToJson(response, responseType, options.emitDefaults), null, 2)}\n`);
  if (method.responseStream) {
    throw new UsageError('This grpcurl stand-in does not call server-streaming methods');
  }
  if (!method.requestStream && requests.length !== 1) {
    throw new UsageError(`Error invoking method "${target}": method is unary but ${requests.length} request messages were given`);
  }
  const response = await new Promise((resolve, reject) => {
    const callback = (error, value) => (error ? reject(error) : resolve(value));
    if (method.requestStream) {
      const call = client.makeClientStreamRequest(path, serialize, deserialize, metadata, callback);
      for (const request of requests) {
        call.write(request);
      }
      call.end();
    } else {
      client.makeUnaryRequest(path, serialize, deserialize, requests[0], metadata, callback);
    }
  }).catch(statusError);
  print(response);
}

async function main() {
  const options = parseArguments(process.argv.slice(2));
  const [address, verb, ...rest] = options.positional;
  if (!address || !verb) {
    throw new UsageError('Too few arguments.');
  }
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  for (const header of options.headers) {
    const colon = header.indexOf(':');
    if (colon <= 0) {
      throw new UsageError(`Invalid header: ${header}`);
    }
    metadata.add(header.slice(0, colon).trim().toLowerCase(), header.slice(colon + 1).trim());
  }
  const reflection = new Reflection(client, metadata);
  try {
    if (verb === 'list') {
      if (rest[0]) {
        const service = (await reflection.rootFor(rest[0])).lookup(rest[0]);
        if (!(service instanceof protobuf.Service)) {
          throw new UsageError(`Service not found: ${rest[0]}`);
        }
        process.stdout.write(service.methodsArray.map((method) => `${rest[0]}.${method.name}\n`).join(''));
      } else {
        process.stdout.write((await reflection.listServices()).map((name) => `${name}\n`).join(''));
      }
    } else if (verb === 'describe') {
      const symbols = rest.length > 0 ? rest : await reflection.listServices();
      const texts = [];
      for (const symbol of symbols) {
        texts.push(describe(symbol.replace(/^\./, '').replace('/', '.'), await reflection.rootFor(symbol.replace(/^\./, '').replace(/\/.*$/, ''))));
      }
      process.stdout.write(`${texts.join('\n')}\n`);
    } else {
      await invoke(client, reflection, verb, metadata, options);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      throw error;
    }
    if (typeof error.code === 'number') {
      fail(`Failed to ${verb === 'list' || verb === 'describe' ? verb : 'invoke'}: ${error.details ?? error.message}`);
    }
    throw error;
  } finally {
    client.close();
  }
}

main().catch((error) => fail(error instanceof UsageError ? error.message : (error.stack ?? String(error))));
