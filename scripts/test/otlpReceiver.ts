import { createServer, type IncomingMessage, type Server } from 'node:http';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import protobuf from 'protobufjs';

/**
 * The part of opentelemetry-proto (collector/trace/v1 and the trace, resource
 * and common messages it uses) that an OTLP/HTTP trace export carries, field
 * numbers as published. No package in node_modules ships these messages as a
 * decoder (@opentelemetry/otlp-transformer only encodes), so the receiver
 * decodes with protobufjs from this text: every field a span can carry is
 * decoded, not found by grepping bytes.
 */
const OTLP_TRACE_PROTO = `
syntax = "proto3";
package opentelemetry.proto;

message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1; }
message ExportTracePartialSuccess { int64 rejected_spans = 1; string error_message = 2; }

message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }

message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  fixed32 flags = 16;
  string name = 5;
  int32 kind = 6;
  fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9;
  uint32 dropped_attributes_count = 10;
  repeated Event events = 11;
  uint32 dropped_events_count = 12;
  repeated Link links = 13;
  uint32 dropped_links_count = 14;
  Status status = 15;

  message Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
  message Link { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; repeated KeyValue attributes = 4; uint32 dropped_attributes_count = 5; fixed32 flags = 6; }
}
message Status { string message = 2; int32 code = 3; }

message AnyValue {
  oneof value {
    string string_value = 1;
    bool bool_value = 2;
    int64 int_value = 3;
    double double_value = 4;
    ArrayValue array_value = 5;
    KeyValueList kvlist_value = 6;
    bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
message KeyValue { string key = 1; AnyValue value = 2; }
`;

const root = protobuf.parse(OTLP_TRACE_PROTO, { keepCase: false }).root;
const ExportTraceServiceRequest = root.lookupType('opentelemetry.proto.ExportTraceServiceRequest');
const ExportTraceServiceResponse = root.lookupType('opentelemetry.proto.ExportTraceServiceResponse');

/** An attribute value as decoded: text, a number (int64 as a JS number), a boolean, bytes, or a list or map of these. */
export type AttributeValue = string | number | boolean | Uint8Array | AttributeValue[] | Attributes | undefined;
export type Attributes = { [key: string]: AttributeValue };

/** A span as the receiver decoded it, with the resource (service.name) it came from. */
export interface ReceivedSpan {
  readonly serviceName: string;
  readonly resource: Attributes;
  readonly scope: string;
  readonly name: string;
  readonly kind: number;
  readonly traceId: string;
  readonly spanId: string;
  readonly attributes: Attributes;
  readonly events: { readonly name: string; readonly attributes: Attributes }[];
  readonly links: { readonly attributes: Attributes }[];
  readonly status: { readonly code: number; readonly message: string };
}

interface DecodedAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number;
  doubleValue?: number;
  arrayValue?: { values?: DecodedAnyValue[] };
  kvlistValue?: { values?: DecodedKeyValue[] };
  bytesValue?: Uint8Array;
}
interface DecodedKeyValue {
  key: string;
  value?: DecodedAnyValue;
}
interface DecodedSpan {
  traceId?: Uint8Array;
  spanId?: Uint8Array;
  name?: string;
  kind?: number;
  attributes?: DecodedKeyValue[];
  events?: { name?: string; attributes?: DecodedKeyValue[] }[];
  links?: { attributes?: DecodedKeyValue[] }[];
  status?: { message?: string; code?: number };
}
interface DecodedRequest {
  resourceSpans?: {
    resource?: { attributes?: DecodedKeyValue[] };
    scopeSpans?: { scope?: { name?: string }; spans?: DecodedSpan[] }[];
  }[];
}

function valueOf(value: DecodedAnyValue | undefined): AttributeValue {
  if (!value) {
    return undefined;
  }
  if (value.stringValue !== undefined) {
    return value.stringValue;
  }
  if (value.boolValue !== undefined) {
    return value.boolValue;
  }
  if (value.intValue !== undefined) {
    return value.intValue;
  }
  if (value.doubleValue !== undefined) {
    return value.doubleValue;
  }
  if (value.arrayValue !== undefined) {
    return (value.arrayValue.values ?? []).map(valueOf);
  }
  if (value.kvlistValue !== undefined) {
    return attributesOf(value.kvlistValue.values);
  }
  return value.bytesValue;
}

function attributesOf(list: DecodedKeyValue[] | undefined): Attributes {
  return Object.fromEntries((list ?? []).map(({ key, value }) => [key, valueOf(value)]));
}

/** Decodes one ExportTraceServiceRequest (application/x-protobuf) into its spans. */
export function decodeTraceExport(body: Uint8Array): ReceivedSpan[] {
  const request = ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(body), {
    longs: Number,
    arrays: true,
  }) as DecodedRequest;
  return (request.resourceSpans ?? []).flatMap((resourceSpans) => {
    const resource = attributesOf(resourceSpans.resource?.attributes);
    return (resourceSpans.scopeSpans ?? []).flatMap((scopeSpans) =>
      (scopeSpans.spans ?? []).map((span) => ({
        serviceName: String(resource['service.name'] ?? ''),
        resource,
        scope: scopeSpans.scope?.name ?? '',
        name: span.name ?? '',
        kind: span.kind ?? 0,
        traceId: Buffer.from(span.traceId ?? []).toString('hex'),
        spanId: Buffer.from(span.spanId ?? []).toString('hex'),
        attributes: attributesOf(span.attributes),
        events: (span.events ?? []).map((event) => ({ name: event.name ?? '', attributes: attributesOf(event.attributes) })),
        links: (span.links ?? []).map((link) => ({ attributes: attributesOf(link.attributes) })),
        status: { code: span.status?.code ?? 0, message: span.status?.message ?? '' },
      })),
    );
  });
}

/** An OTLP/HTTP trace receiver: what every export carried, raw and decoded. */
export interface OtlpReceiver {
  /** http://127.0.0.1:port, for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces). */
  readonly endpoint: string;
  /** Every span decoded so far, in arrival order. */
  readonly spans: ReceivedSpan[];
  /** Every request body as it arrived (after any gzip), for a byte-level search beside the decoded one. */
  readonly bodies: Buffer[];
  /** Requests that could not be handled: a path other than /v1/traces, a body that did not decode. */
  readonly failures: string[];
  close(): Promise<void>;
}

async function bodyOf(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) {
    chunks.push(chunk as Buffer);
  }
  const body = Buffer.concat(chunks);
  return request.headers['content-encoding'] === 'gzip' ? promisify(gunzip)(body) : body;
}

/**
 * Starts a receiver for OTLP/HTTP with protobuf bodies, which is what
 * @opentelemetry/exporter-trace-otlp-proto sends (the exporter
 * startTelemetry uses for OTEL_TRACES_EXPORTER=otlp). Anything else it is
 * sent is recorded as a failure, so that a test can assert there was none
 * rather than miss spans it could not read.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const bodies: Buffer[] = [];
  const failures: string[] = [];
  const server: Server = createServer((request, response) => {
    void (async () => {
      try {
        const body = await bodyOf(request);
        if (request.method !== 'POST' || request.url !== '/v1/traces') {
          failures.push(`${request.method} ${request.url}`);
          response.writeHead(404).end();
          return;
        }
        if (!String(request.headers['content-type']).startsWith('application/x-protobuf')) {
          failures.push(`content-type ${request.headers['content-type']}`);
        }
        bodies.push(body);
        spans.push(...decodeTraceExport(body));
        response
          .writeHead(200, { 'content-type': 'application/x-protobuf' })
          .end(Buffer.from(ExportTraceServiceResponse.encode(ExportTraceServiceResponse.create({})).finish()));
      } catch (error) {
        failures.push(`${request.url}: ${(error as Error).message}`);
        response.writeHead(400).end();
      }
    })();
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    bodies,
    failures,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
