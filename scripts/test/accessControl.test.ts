import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { agentContextV1, analyticsV1, auditV1, documentV1, patientV1, sessionV1, vitalsV1 } from '@clinical/contracts';
import { ROLES } from '@clinical/server-kit';
import { ClientError, createChannel, createClient, Metadata, Status, type Channel } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAccessMatrix, publishedTable, renderAccessMatrix } from '../accessMatrix.js';
import { ROOT } from '../checkout.js';
import { createDevStack, exitOf, type DevStack, type StartRun } from './devStack.js';

/**
 * Access control as published in SECURITY.md, proven against the whole stack
 * as `npm start` runs it: the authorization matrix cell by cell, each role
 * against each method; and site scope, every method that returns, counts or
 * aggregates patient data asked by a caller of another site.
 */

/** Every service definition of the contracts, as a client reaches it: independent of the policies. */
const DEFINITIONS = [
  patientV1.PatientServiceDefinition,
  documentV1.DocumentServiceDefinition,
  vitalsV1.VitalsServiceDefinition,
  auditV1.AuditServiceDefinition,
  agentContextV1.AgentContextServiceDefinition,
  sessionV1.SessionServiceDefinition,
  analyticsV1.AnalyticsServiceDefinition,
];
const METHODS = new Map(
  DEFINITIONS.flatMap((definition) =>
    Object.entries(definition.methods).map(([clientMethod, method]) => [
      `/${definition.fullName}/${method.name}`,
      { definition, clientMethod, requestStream: method.requestStream },
    ]),
  ),
);
/** What an allowed call may answer to an empty request: anything past admission, never a refusal or a fault. */
const PAST_ADMISSION = [Status.OK, Status.INVALID_ARGUMENT, Status.NOT_FOUND, Status.FAILED_PRECONDITION, Status.ABORTED];

const published = publishedTable(readFileSync(join(ROOT, 'SECURITY.md'), 'utf8'));

let stack: DevStack;
let run: StartRun;
const channels: Channel[] = [];

beforeAll(async () => {
  stack = await createDevStack();
  run = stack.npmStart();
  await stack.untilServing(run);
}, 600_000);

afterAll(async () => {
  for (const channel of channels) {
    channel.close();
  }
  if (run?.child.pid && run.child.exitCode === null) {
    process.kill(-run.child.pid, 'SIGINT');
    await exitOf(run.child);
  }
  stack?.remove();
}, 120_000);

function channelTo(server: string): Channel {
  const index = ['patient-svc', 'vitals-svc', 'audit-svc', 'analytics-svc'].indexOf(server);
  expect(index, server).toBeGreaterThanOrEqual(0);
  const channel = createChannel(`127.0.0.1:${stack.ports.services[index]}`);
  channels.push(channel);
  return channel;
}

/** The status of one call of `path` on `server` with an empty request, as `token`. */
async function statusOfEmptyCall(server: string, path: string, token: string): Promise<Status> {
  const { definition, clientMethod, requestStream } = METHODS.get(path)!;
  const client = createClient(definition, channelTo(server)) as unknown as Record<string, (request: unknown, options: object) => Promise<unknown>>;
  const request = requestStream ? (async function* () {})() : {};
  try {
    await client[clientMethod]!(request, { metadata: Metadata({ authorization: `Bearer ${token}` }) });
    return Status.OK;
  } catch (error) {
    if (error instanceof ClientError) {
      return error.code;
    }
    throw error;
  }
}

describe('the authorization matrix', () => {
  it('is published in SECURITY.md exactly as the method policies make it', () => {
    expect(published, 'SECURITY.md has no access matrix: npm run access:matrix').toBeDefined();
    expect(published, 'SECURITY.md is stale: npm run access:matrix').toBe(renderAccessMatrix());
  });

  it('lists every method of every service, and every role', () => {
    const rows = parseAccessMatrix(published!);
    expect(rows.map((row) => row.path).sort()).toEqual([...METHODS.keys()].sort());
    expect(published!.split('\n')[0]).toBe(`| method | served by | ${ROLES.join(' | ')} | cost |`);
  });

  it('holds in every cell: each role against each method, allowed or denied as published', async () => {
    const tokens = new Map<string, string>();
    for (const role of ROLES) {
      tokens.set(role, await stack.npmRun('token', ['--roles', role, '--sites', '*', '--sub', `matrix-${role}`]));
    }
    const mismatches: string[] = [];
    let cells = 0;
    for (const row of parseAccessMatrix(published!)) {
      for (const role of ROLES) {
        const status = await statusOfEmptyCall(row.server, row.path, tokens.get(role)!);
        cells += 1;
        const allowed = row.allowed.has(role);
        if (allowed ? !PAST_ADMISSION.includes(status) : status !== Status.PERMISSION_DENIED) {
          mismatches.push(`${role} ${row.path}: ${allowed ? 'allowed' : 'denied'} in the matrix, answered ${Status[status]}`);
        }
      }
    }
    expect(mismatches).toEqual([]);
    expect(cells).toBe(METHODS.size * ROLES.length);
  }, 300_000);
});

/** A call's answer with the ids it was asked about replaced, to compare answers about different ids. */
async function answerOf(call: Promise<unknown>, ids: readonly string[]): Promise<string> {
  const answer = await call.then(
    (response) => ({ status: 'OK', response }),
    (error: unknown) => {
      if (!(error instanceof ClientError)) {
        throw error;
      }
      return { status: Status[error.code], details: error.details };
    },
  );
  return ids.reduce((text, id) => text.replaceAll(id, '<id>'), JSON.stringify(answer));
}

describe('site scope', () => {
  const SITE = 'SCOPE-SITE-A';
  const NOWHERE = 'SCOPE-SITE-NOWHERE';
  const PROTOCOL = 'SCOPE-PROTOCOL';
  const AGENT = 'scope-agent';
  const missing = { patientId: randomUUID(), documentId: randomUUID(), eventId: randomUUID() };
  let held: { patientId: string; documentId: string; eventId: string };
  let heldEtag: string;
  let outsider: Metadata;
  const as = <Definition extends (typeof DEFINITIONS)[number]>(definition: Definition, server: string, metadata: Metadata) =>
    createClient(definition, channelTo(server), { '*': { metadata } });

  beforeAll(async () => {
    const bearer = async (roles: string, sites: string, sub: string) =>
      Metadata({ authorization: `Bearer ${await stack.npmRun('token', ['--roles', roles, '--sites', sites, '--sub', sub])}` });
    const insider = await bearer('admin,agent', SITE, 'scope-insider');
    const everySite = await bearer('admin,auditor', '*', 'scope-admin');
    outsider = await bearer('coordinator,agent,auditor', 'SCOPE-SITE-B', 'scope-outsider');

    const { patient } = await as(patientV1.PatientServiceDefinition, 'patient-svc', insider).createPatient({
      patient: { subjectNumber: 'SCOPE-001', siteId: SITE, protocolId: PROTOCOL, enrollmentDate: { year: 2026, month: 1, day: 15 } },
    });
    const { document } = await as(documentV1.DocumentServiceDefinition, 'patient-svc', insider).createDocument({
      document: { patientId: patient!.patientId, documentType: documentV1.DocumentType.DOCUMENT_TYPE_PROTOCOL, title: 'Scope', content: { note: 'held' } },
    });
    await as(vitalsV1.VitalsServiceDefinition, 'vitals-svc', insider).recordVitals({
      reading: { patientId: patient!.patientId, measurementTime: new Date(), temperatureCelsius: 37 },
    });
    const agents = as(agentContextV1.AgentContextServiceDefinition, 'audit-svc', insider);
    await agents.upsertAgentContext({ agentContext: { agentId: AGENT, contextType: 'scope' } });
    await agents.appendAgentDecision({ agentId: AGENT, decision: { action: 'flag', patientId: patient!.patientId } });
    await as(analyticsV1.AnalyticsServiceDefinition, 'analytics-svc', everySite).refreshAnalytics({});
    const { events } = await as(auditV1.AuditServiceDefinition, 'audit-svc', everySite).listAuditEvents({ patientId: patient!.patientId, pageSize: 1 });
    held = { patientId: patient!.patientId, documentId: document!.documentId, eventId: events[0]!.eventId };
    heldEtag = patient!.etag;
  }, 120_000);

  /** Asked of the held patient (document, event) and of one that does not exist, the outsider gets the same answer. */
  const sameAnswerAsForMissing: Record<string, (ids: typeof held) => Promise<unknown>> = {
    GetPatient: (ids) => as(patientV1.PatientServiceDefinition, 'patient-svc', outsider).getPatient({ patientId: ids.patientId }),
    UpdatePatient: (ids) =>
      as(patientV1.PatientServiceDefinition, 'patient-svc', outsider).updatePatient({
        patient: { patientId: ids.patientId, treatmentArm: 'B', etag: heldEtag },
        updateMask: ['treatment_arm'],
        reason: 'scope',
      }),
    ChangePatientStatus: (ids) =>
      as(patientV1.PatientServiceDefinition, 'patient-svc', outsider).changePatientStatus({
        patientId: ids.patientId,
        status: patientV1.PatientStatus.PATIENT_STATUS_SCREENING,
        reason: 'scope',
        etag: heldEtag,
      }),
    CreateDocument: (ids) =>
      as(documentV1.DocumentServiceDefinition, 'patient-svc', outsider).createDocument({
        document: { patientId: ids.patientId, documentType: documentV1.DocumentType.DOCUMENT_TYPE_PROTOCOL, title: 'Scope' },
      }),
    GetDocument: (ids) => as(documentV1.DocumentServiceDefinition, 'patient-svc', outsider).getDocument({ documentId: ids.documentId }),
    ListDocuments: (ids) => as(documentV1.DocumentServiceDefinition, 'patient-svc', outsider).listDocuments({ patientId: ids.patientId }),
    CreateDocumentVersion: (ids) =>
      as(documentV1.DocumentServiceDefinition, 'patient-svc', outsider).createDocumentVersion({ documentId: ids.documentId, expectedVersion: 1, title: 'Scope 2' }),
    ListDocumentVersions: (ids) => as(documentV1.DocumentServiceDefinition, 'patient-svc', outsider).listDocumentVersions({ documentId: ids.documentId }),
    RecordVitals: (ids) =>
      as(vitalsV1.VitalsServiceDefinition, 'vitals-svc', outsider).recordVitals({
        reading: { patientId: ids.patientId, measurementTime: new Date(Date.UTC(2026, 0, 20)), temperatureCelsius: 37 },
      }),
    BatchRecordVitals: (ids) =>
      as(vitalsV1.VitalsServiceDefinition, 'vitals-svc', outsider).batchRecordVitals({
        readings: [{ patientId: ids.patientId, measurementTime: new Date(Date.UTC(2026, 0, 20)), temperatureCelsius: 37 }],
      }),
    StreamVitals: (ids) =>
      as(vitalsV1.VitalsServiceDefinition, 'vitals-svc', outsider).streamVitals(
        (async function* () {
          yield { readings: [{ patientId: ids.patientId, measurementTime: new Date(Date.UTC(2026, 0, 20)), temperatureCelsius: 37 }] };
        })(),
      ),
    ListVitals: (ids) => as(vitalsV1.VitalsServiceDefinition, 'vitals-svc', outsider).listVitals({ patientId: ids.patientId }),
    GetLatestVitals: (ids) => as(vitalsV1.VitalsServiceDefinition, 'vitals-svc', outsider).getLatestVitals({ patientId: ids.patientId }),
    SummarizeVitals: (ids) => as(vitalsV1.VitalsServiceDefinition, 'vitals-svc', outsider).summarizeVitals({ patientId: ids.patientId }),
    ListAuditEvents: (ids) => as(auditV1.AuditServiceDefinition, 'audit-svc', outsider).listAuditEvents({ patientId: ids.patientId }),
    GetAuditEvent: (ids) => as(auditV1.AuditServiceDefinition, 'audit-svc', outsider).getAuditEvent({ eventId: ids.eventId }),
    AppendAgentDecision: (ids) =>
      as(agentContextV1.AgentContextServiceDefinition, 'audit-svc', outsider).appendAgentDecision({
        agentId: AGENT,
        decision: { action: 'flag', patientId: ids.patientId },
      }),
  };

  for (const [method, call] of Object.entries(sameAnswerAsForMissing)) {
    it(`${method}: another site's patient is answered exactly like one that does not exist`, async () => {
      const ids = Object.values(held).concat(Object.values(missing));
      const answer = await answerOf(call(held), ids);
      // A request the method refuses for its form would prove nothing about scope.
      expect(answer).not.toMatch(/"status":"(INVALID_ARGUMENT|INTERNAL|UNKNOWN)"/);
      expect(answer).toBe(await answerOf(call(missing), ids));
    });
  }

  it('lists and creations: another site is answered like a site with nothing, and never appears', async () => {
    const patients = as(patientV1.PatientServiceDefinition, 'patient-svc', outsider);
    const analytics = as(analyticsV1.AnalyticsServiceDefinition, 'analytics-svc', outsider);
    const bySite = async (site: string) => [
      await answerOf(patients.listPatients({ siteId: site }), [site]),
      await answerOf(
        patients.createPatient({ patient: { subjectNumber: 'SCOPE-002', siteId: site, protocolId: PROTOCOL, enrollmentDate: { year: 2026, month: 1, day: 15 } } }),
        [site],
      ),
      await answerOf(
        patients.batchCreatePatients({
          requests: [{ patient: { subjectNumber: 'SCOPE-003', siteId: site, protocolId: PROTOCOL, enrollmentDate: { year: 2026, month: 1, day: 15 } } }],
        }),
        [site],
      ),
      await answerOf(analytics.getSiteAnalytics({ siteId: site, protocolId: PROTOCOL }), [site]),
      await answerOf(analytics.listSiteAnalytics({ siteId: site }), [site]),
    ];
    expect(await bySite(SITE)).toEqual(await bySite(NOWHERE));

    const everything = JSON.stringify([
      await patients.listPatients({}),
      await analytics.listSiteAnalytics({}),
      await as(agentContextV1.AgentContextServiceDefinition, 'audit-svc', outsider).getAgentContext({ agentId: AGENT }),
      await as(agentContextV1.AgentContextServiceDefinition, 'audit-svc', outsider).listAgentContexts({}),
      await as(auditV1.AuditServiceDefinition, 'audit-svc', outsider).listAuditEvents({}),
    ]);
    for (const trace of [SITE, held.patientId, held.documentId, held.eventId]) {
      expect(everything).not.toContain(trace);
    }
    const context = await as(agentContextV1.AgentContextServiceDefinition, 'audit-svc', outsider).getAgentContext({ agentId: AGENT });
    expect(context.agentContext?.decisionCount).toBe(context.agentContext?.decisions.length);
  });

  it('VerifyAuditTrail, which counts every event of every site, is for callers of every site only', async () => {
    const refusal = await answerOf(as(auditV1.AuditServiceDefinition, 'audit-svc', outsider).verifyAuditTrail({}), []);
    expect(JSON.parse(refusal)).toEqual({ status: 'PERMISSION_DENIED', details: 'verifying the audit trail needs access to every site' });
  });
});
