import { randomBytes, randomUUID } from 'node:crypto';
import { patientV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { eventually, recordedSpans } from '@clinical/testing';
import { SpanKind } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { Metadata } from 'nice-grpc';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { patientServiceModule } from '../patientServiceModule.js';
import { patientCacheKey } from './patientCache.js';

let service: TestService;

beforeAll(async () => {
  service = await startTestService(patientServiceModule);
});

afterAll(async () => {
  await service?.stop();
});

it("continues the caller's trace: one GetPatient, its SQL and its Redis commands in it, without PHI", async () => {
  const token = await service.token({ sub: 'tracer', roles: ['coordinator'], sites: ['SITE-A'] });
  const client = service.client(patientV1.PatientServiceDefinition, token);
  const subjectNumber = `TRACE-${randomUUID().slice(0, 8)}`;
  const { patient } = await client.createPatient({
    patient: {
      ...patientV1.Patient.fromPartial({}),
      subjectNumber,
      siteId: 'SITE-A',
      protocolId: 'RA001',
      enrollmentDate: { year: 2024, month: 5, day: 1 },
      demographics: patientV1.Demographics.fromPartial({ ethnicity: 'ethnicity-marker-value' }),
    },
  });
  // A miss: the read goes to PostgreSQL and fills the cache.
  await service.redis.del(patientCacheKey(patient!.patientId));

  // The caller's own trace, sampled, as an upstream service would send it.
  const traceId = randomBytes(16).toString('hex');
  const callerSpanId = randomBytes(8).toString('hex');
  await client.getPatient(
    { patientId: patient!.patientId },
    { metadata: Metadata({ authorization: `Bearer ${token}`, traceparent: `00-${traceId}-${callerSpanId}-01` }) },
  );

  // The cache fill is sent after the answer: wait until its span has ended too.
  const inTraceOf = () => {
    const spans = recordedSpans().filter((span) => span.spanContext().traceId === traceId);
    const server = spans.find(
      (span) => span.kind === SpanKind.SERVER && span.name.endsWith('clinical.patient.v1.PatientService/GetPatient'),
    );
    return server && spans;
  };
  const isRedis = (span: ReadableSpan) => span.attributes['db.system'] === 'redis' || span.attributes['db.system.name'] === 'redis';
  const inTrace = await eventually(
    async () => inTraceOf()?.find((span) => isRedis(span) && span.name.startsWith('eval')) && inTraceOf(),
    10_000,
    'the server span and the cache fill in one trace',
  );

  const server = inTrace.find((span) => span.kind === SpanKind.SERVER)!;
  expect(server.parentSpanContext?.spanId, "the server span's parent is the caller's").toBe(callerSpanId);
  expect(server.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': 'clinical.patient.v1.PatientService', 'rpc.method': 'GetPatient', 'rpc.grpc.status_code': 0 });
  const sql = inTrace.filter((span) => span.attributes['db.system'] === 'postgresql' || span.attributes['db.system.name'] === 'postgresql');
  const redis = inTrace.filter(isRedis);
  expect(sql.length, 'SQL spans').toBeGreaterThan(0);
  const redisCommands = redis.map((span) => span.name);
  expect(redisCommands).toContain('get');

  const statements = sql.map((span) => String(span.attributes['db.statement'] ?? span.attributes['db.query.text'] ?? ''));
  expect(statements.some((statement) => /FROM patients WHERE patient_id = \$1/.test(statement))).toBe(true);

  // No PHI anywhere in the trace: names, demographics and values stay out of spans.
  const everything = JSON.stringify(inTrace.map((span) => ({ name: span.name, attributes: span.attributes, events: span.events })));
  expect(everything).not.toContain('ethnicity-marker-value');
  expect(everything).not.toContain(subjectNumber);
});
