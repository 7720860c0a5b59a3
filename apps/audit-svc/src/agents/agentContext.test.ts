import { agentContextV1, auditV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { Status } from 'nice-grpc';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditServiceModule } from '../auditServiceModule.js';
import { connectAs, expectStatus, insertPatient } from '../testKit.js';

let service: TestService;
let admin: pg.Client;
let agent: ReturnType<typeof clientOf>;
const clientOf = (token: string) => service.client(agentContextV1.AgentContextServiceDefinition, token);

beforeAll(async () => {
  service = await startTestService(auditServiceModule);
  admin = await connectAs(service);
  agent = clientOf(await service.token({ sub: 'agent-7', roles: ['agent'], sites: ['SITE-A'] }));
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

describe('AgentContextService', () => {
  it('creates, replaces with the current etag, and refuses a stale one', async () => {
    const created = await agent.upsertAgentContext({
      agentContext: { agentId: 'monitor-bot', contextType: 'trial_monitoring', contextData: { step: 1 } },
      reason: 'first run',
    });
    expect(created.created).toBe(true);
    const etag = created.agentContext!.etag;
    await expectStatus(
      agent.upsertAgentContext({ agentContext: { agentId: 'monitor-bot', contextType: 'x', contextData: {} } }),
      Status.ABORTED,
    );
    const replaced = await agent.upsertAgentContext({
      agentContext: { agentId: 'monitor-bot', contextType: 'ignored', contextData: { step: 2 }, etag },
      updateMask: ['context_data'],
    });
    expect(replaced.agentContext).toMatchObject({ contextType: 'trial_monitoring', contextData: { step: 2 } });
    expect(replaced.created).toBe(false);
    await expectStatus(
      agent.upsertAgentContext({ agentContext: { agentId: 'monitor-bot', contextType: 'x', contextData: {}, etag } }),
      Status.ABORTED,
    );
    await expectStatus(
      agent.upsertAgentContext({ agentContext: { agentId: 'nobody', contextType: 'x', contextData: {}, etag } }),
      Status.NOT_FOUND,
    );
    // Etags this service never writes: beyond int8, leading zeros.
    for (const forged of ['"9999999999999999999.1"', '"1.-9999999999999999999"', '"01.5"']) {
      const refusal = await expectStatus(
        agent.upsertAgentContext({ agentContext: { agentId: 'monitor-bot', contextType: 'x', contextData: {}, etag: forged } }),
        Status.INVALID_ARGUMENT,
      );
      expect(refusal.details).toMatch(/^agent_context\.etag: /);
    }
    const { rows } = await admin.query(
      "SELECT action, reason, user_id FROM audit_events WHERE entity_type = 'agent_context' AND entity_key = 'monitor-bot' ORDER BY event_seq",
    );
    expect(rows).toEqual([
      { action: 'INSERT', reason: 'first run', user_id: 'agent-7' },
      { action: 'UPDATE', reason: null, user_id: 'agent-7' },
    ]);
  });

  it('loses no decision to concurrent appends, and the etag does not move', async () => {
    const { agentContext } = await agent.upsertAgentContext({ agentContext: { agentId: 'busy-bot', contextType: 'triage', contextData: {} } });
    const N = 40;
    const appended = await Promise.all(
      Array.from({ length: N }, (_, index) =>
        agent.appendAgentDecision({ agentId: 'busy-bot', decision: { action: `decide-${index}`, confidence: 0.5, patientId: '', rationale: '', decisionId: '', sequenceNumber: '0', createdBy: '', details: { index } } }),
      ),
    );
    expect(new Set(appended.map((response) => response.decision!.sequenceNumber)).size).toBe(N);
    const { agentContext: read } = await agent.getAgentContext({ agentId: 'busy-bot' });
    expect(read!.decisions.map((decision) => decision.sequenceNumber)).toEqual(Array.from({ length: N }, (_, index) => String(index + 1)));
    expect(new Set(read!.decisions.map((decision) => decision.action)).size).toBe(N);
    expect(read!.etag).toBe(agentContext!.etag);
    const { rows } = await admin.query(
      "SELECT count(*)::int AS n FROM audit_events WHERE entity_type = 'agent_context' AND entity_key = 'busy-bot' AND action = 'UPDATE'",
    );
    expect(rows[0].n).toBe(N);
  });

  it('keeps decisions about other sites out of reach, in responses and in the trail', async () => {
    const siteA = await insertPatient(admin, 'SITE-A');
    const siteB = await insertPatient(admin, 'SITE-B');
    await agent.upsertAgentContext({ agentContext: { agentId: 'site-bot', contextType: 'triage', contextData: {} } });
    const everywhere = clientOf(await service.token({ sub: 'agent-all', roles: ['agent'], sites: '*' }));
    await agent.appendAgentDecision({ agentId: 'site-bot', decision: agentContextV1.AgentDecision.fromPartial({ action: 'flag', patientId: siteA }) });
    await expectStatus(
      agent.appendAgentDecision({ agentId: 'site-bot', decision: agentContextV1.AgentDecision.fromPartial({ action: 'flag', patientId: siteB }) }),
      Status.NOT_FOUND,
    );
    await everywhere.appendAgentDecision({ agentId: 'site-bot', decision: agentContextV1.AgentDecision.fromPartial({ action: 'flag', patientId: siteB }) });
    const seen = await agent.getAgentContext({ agentId: 'site-bot' });
    expect(seen.agentContext!.decisions.map((decision) => decision.patientId)).toEqual([siteA]);
    expect(seen.agentContext!.decisionCount).toBe(1);
    expect((await everywhere.getAgentContext({ agentId: 'site-bot' })).agentContext!.decisionCount).toBe(2);

    const auditorA = service.client(auditV1.AuditServiceDefinition, await service.token({ sub: 'aud-a', roles: ['auditor'], sites: ['SITE-A'] }));
    const trail = await auditorA.listAuditEvents({ entityType: 'mcp_context', entityId: 'site-bot' });
    expect(trail.events.map((event) => event.patientId).filter(Boolean)).toEqual([siteA]);
  });

  it('lists by context type in keyset pages and checks its input', async () => {
    for (const name of ['list-a', 'list-b', 'list-c']) {
      await agent.upsertAgentContext({ agentContext: { agentId: name, contextType: 'listing', contextData: {} } });
    }
    const first = await agent.listAgentContexts({ contextType: 'listing', pageSize: 2 });
    expect(first.agentContexts.map((context) => context.agentId)).toEqual(['list-a', 'list-b']);
    const second = await agent.listAgentContexts({ contextType: 'listing', pageSize: 2, pageToken: first.nextPageToken });
    expect(second.agentContexts.map((context) => context.agentId)).toEqual(['list-c']);
    expect(second.nextPageToken).toBe('');
    await expectStatus(agent.listAgentContexts({ contextType: 'other', pageToken: first.nextPageToken }), Status.INVALID_ARGUMENT);
    await expectStatus(agent.listAgentContexts({ pageSize: -1 }), Status.INVALID_ARGUMENT);
    const bad = await expectStatus(
      agent.appendAgentDecision({ agentId: 'bad id!', decision: agentContextV1.AgentDecision.fromPartial({ action: '', confidence: Number.NaN }) }),
      Status.INVALID_ARGUMENT,
    );
    expect(bad.details).toMatch(/agent_id/);
    expect(bad.details).toMatch(/decision\.action/);
    expect(bad.details).toMatch(/decision\.confidence/);
    const unstorable = await expectStatus(
      agent.upsertAgentContext({ agentContext: { agentId: 'json-check', contextType: 'listing', contextData: { note: 'a\u0000' } } }),
      Status.INVALID_ARGUMENT,
    );
    expect(unstorable.details).toBe('agent_context.context_data: must not contain NUL characters or unpaired surrogates');
    const badDetails = await expectStatus(
      agent.appendAgentDecision({ agentId: 'list-a', decision: agentContextV1.AgentDecision.fromPartial({ action: 'a', details: { x: [Number.POSITIVE_INFINITY] } }) }),
      Status.INVALID_ARGUMENT,
    );
    expect(badDetails.details).toBe('decision.details: must not contain NaN or infinite numbers');
    await expectStatus(agent.appendAgentDecision({ agentId: 'missing', decision: agentContextV1.AgentDecision.fromPartial({ action: 'a' }) }), Status.NOT_FOUND);
    const auditor = clientOf(await service.token({ sub: 'aud', roles: ['auditor'], sites: '*' }));
    await expectStatus(auditor.upsertAgentContext({ agentContext: { agentId: 'x', contextType: 'y', contextData: {} } }), Status.PERMISSION_DENIED);
  });
});

/** Access events the service recorded for `patientId` (flushed first). */
async function accessEventsAbout(patientId: string): Promise<{ method: string; entity_type: string; user_id: string }[]> {
  await service.running.runtime.accessRecorder.flush();
  const { rows } = await admin.query(
    `SELECT payload ->> 'method' AS method, entity_type, user_id FROM audit_events
      WHERE event_type = 'DATA_ACCESS' AND patient_id = $1 ORDER BY event_seq`,
    [patientId],
  );
  return rows;
}

describe('AgentContextService: roles', () => {
  it('serves agents and admins only, as the contract says: an auditor reads the trail instead', async () => {
    await agent.upsertAgentContext({ agentContext: { agentId: 'roles-bot', contextType: 'triage', contextData: {} } });
    const auditor = clientOf(await service.token({ sub: 'aud-r', roles: ['auditor'], sites: '*' }));
    await expectStatus(auditor.getAgentContext({ agentId: 'roles-bot' }), Status.PERMISSION_DENIED);
    await expectStatus(auditor.listAgentContexts({}), Status.PERMISSION_DENIED);
    await expectStatus(auditor.appendAgentDecision({ agentId: 'roles-bot', decision: agentContextV1.AgentDecision.fromPartial({ action: 'a' }) }), Status.PERMISSION_DENIED);
    const admin_ = clientOf(await service.token({ sub: 'admin-r', roles: ['admin'], sites: '*' }));
    expect((await admin_.getAgentContext({ agentId: 'roles-bot' })).agentContext!.agentId).toBe('roles-bot');
  });
});

describe('AgentContextService: size limits', () => {
  it('refuses details over 2 KiB and rationales over 1000 characters (INVALID_ARGUMENT)', async () => {
    await agent.upsertAgentContext({ agentContext: { agentId: 'limits-bot', contextType: 'triage', contextData: {} } });
    const tooMuch = await expectStatus(
      agent.appendAgentDecision({
        agentId: 'limits-bot',
        decision: agentContextV1.AgentDecision.fromPartial({ action: 'a', rationale: 'r'.repeat(1_001), details: { blob: 'x'.repeat(2_048) } }),
      }),
      Status.INVALID_ARGUMENT,
    );
    expect(tooMuch.details).toMatch(/decision\.details/);
    expect(tooMuch.details).toMatch(/decision\.rationale/);
    // At the limits, accepted.
    const fits = await agent.appendAgentDecision({
      agentId: 'limits-bot',
      decision: agentContextV1.AgentDecision.fromPartial({ action: 'a'.repeat(200), rationale: 'r'.repeat(1_000), details: { blob: 'x'.repeat(2_000) } }),
    });
    expect(fits.decision!.sequenceNumber).toBe('1');
    await expectStatus(
      agent.upsertAgentContext({ agentContext: { agentId: 'limits-big', contextType: 'triage', contextData: { blob: 'x'.repeat(256 * 1024) } } }),
      Status.INVALID_ARGUMENT,
    );
  });

  it('holds at most 1000 decisions (FAILED_PRECONDITION beyond), and a read returns at most 1000', async () => {
    await agent.upsertAgentContext({ agentContext: { agentId: 'full-bot', contextType: 'triage', contextData: {} } });
    const decisions = (from: number, to: number) => `
      (SELECT jsonb_agg(jsonb_build_object('decision_id', gen_random_uuid(), 'sequence_number', g,
                 'decision_time', now(), 'action', 'act-' || g, 'created_by', 'agent-7') ORDER BY g)
         FROM generate_series(${from}, ${to}) AS g)`;
    await admin.query(`UPDATE mcp_context SET decisions = ${decisions(1, 999)} WHERE agent_id = 'full-bot'`);
    const last = await agent.appendAgentDecision({ agentId: 'full-bot', decision: agentContextV1.AgentDecision.fromPartial({ action: 'last' }) });
    expect(last.decision!.sequenceNumber).toBe('1000');
    const full = await expectStatus(
      agent.appendAgentDecision({ agentId: 'full-bot', decision: agentContextV1.AgentDecision.fromPartial({ action: 'one more' }) }),
      Status.FAILED_PRECONDITION,
    );
    expect(full.details).toMatch(/1000 decisions/);
    const read = (await agent.getAgentContext({ agentId: 'full-bot' })).agentContext!;
    expect(read.decisions).toHaveLength(1_000);
    expect(read.decisionCount).toBe(1_000);

    // A context written before the limits (or by SQL) holding more: the oldest 1000 are returned, all are counted.
    await admin.query(`UPDATE mcp_context SET decisions = ${decisions(1, 1_500)} WHERE agent_id = 'full-bot'`);
    const legacy = (await agent.getAgentContext({ agentId: 'full-bot' })).agentContext!;
    expect(legacy.decisions).toHaveLength(1_000);
    expect(legacy.decisions[999]!.sequenceNumber).toBe('1000');
    expect(legacy.decisionCount).toBe(1_500);
  });

  it('returns as many of the oldest decisions as fit a 4 MiB response, and counts them all', async () => {
    // 1000 numbers in each decision's details (2 KB of JSON) take 11 KB as protobuf: 500 of them, 5.5 MB.
    await agent.upsertAgentContext({ agentContext: { agentId: 'numeric-bot', contextType: 'triage', contextData: {} } });
    await admin.query(`UPDATE mcp_context SET decisions =
      (SELECT jsonb_agg(jsonb_build_object('decision_id', gen_random_uuid(), 'sequence_number', g, 'decision_time', now(),
                 'action', 'act-' || g, 'created_by', 'agent-7',
                 'details', jsonb_build_object('scores', (SELECT jsonb_agg(0) FROM generate_series(1, 1000)))) ORDER BY g)
         FROM generate_series(1, 500) AS g)
      WHERE agent_id = 'numeric-bot'`);
    // Read through the test client's default 4 MiB limit.
    const read = (await agent.getAgentContext({ agentId: 'numeric-bot' })).agentContext!;
    expect(read.decisionCount).toBe(500);
    expect(read.decisions.length).toBeGreaterThan(300);
    expect(read.decisions.length).toBeLessThan(400);
    expect(read.decisions.map((decision) => decision.sequenceNumber)).toEqual(read.decisions.map((_, index) => String(index + 1)));
  });

  it('ends a ListAgentContexts page where the response would pass 4 MiB', async () => {
    // 120,000 numbers: 240 KB of JSON (within the 256 KiB limit), 1.3 MB as protobuf.
    const names = ['numeric-1', 'numeric-2', 'numeric-3', 'numeric-4'];
    for (const name of names) {
      await agent.upsertAgentContext({ agentContext: { agentId: name, contextType: 'numeric', contextData: { scores: Array(120_000).fill(0) } } });
    }
    const pages: string[][] = [];
    let pageToken = '';
    do {
      const page = await agent.listAgentContexts({ contextType: 'numeric', pageSize: 500, pageToken });
      pages.push(page.agentContexts.map((context) => context.agentId));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(pages.map((page) => page.length)).toEqual([3, 1]);
    expect(pages.flat()).toEqual(names);
  });

  it('ends a ListAgentContexts page before its context_data passes about 3 MiB', async () => {
    const names = Array.from({ length: 15 }, (_, index) => `bulky-${String(index).padStart(2, '0')}`);
    for (const name of names) {
      await agent.upsertAgentContext({ agentContext: { agentId: name, contextType: 'bulky', contextData: { blob: 'x'.repeat(250 * 1024) } } });
    }
    const pages: string[][] = [];
    let pageToken = '';
    do {
      const page = await agent.listAgentContexts({ contextType: 'bulky', pageSize: 500, pageToken });
      pages.push(page.agentContexts.map((context) => context.agentId));
      pageToken = page.nextPageToken;
    } while (pageToken);
    // 12 contexts of 250 KiB fit 3 MiB; the 13th would not.
    expect(pages.map((page) => page.length)).toEqual([12, 3]);
    expect(pages.flat()).toEqual(names);
  });
});

describe('AgentContextService: reads of decisions are audited', () => {
  it('records an access event per patient when UpsertAgentContext returns decisions, as GetAgentContext does', async () => {
    const patientId = await insertPatient(admin, 'SITE-A');
    const created = await agent.upsertAgentContext({ agentContext: { agentId: 'upsert-reads', contextType: 'triage', contextData: {} } });
    await agent.appendAgentDecision({ agentId: 'upsert-reads', decision: agentContextV1.AgentDecision.fromPartial({ action: 'flag', patientId }) });
    await agent.appendAgentDecision({ agentId: 'upsert-reads', decision: agentContextV1.AgentDecision.fromPartial({ action: 'flag again', patientId }) });
    expect(await accessEventsAbout(patientId)).toEqual([]);

    const requestId = '5d3c8f1e-2a4b-4c6d-8e0f-1a2b3c4d5e6f';
    const replaced = await agent.upsertAgentContext({
      agentContext: { agentId: 'upsert-reads', contextType: 'triage', contextData: { step: 2 }, etag: created.agentContext!.etag },
      requestId,
    });
    expect(replaced.agentContext!.decisions.map((decision) => decision.patientId)).toEqual([patientId, patientId]);
    const upsertMethod = '/clinical.audit.v1.AgentContextService/UpsertAgentContext';
    // One event for the patient, however many decisions name it.
    expect(await accessEventsAbout(patientId)).toEqual([{ method: upsertMethod, entity_type: 'mcp_context', user_id: 'agent-7' }]);

    // A retry replays the first response: its decisions are read again, and audited again.
    const replayed = await agent.upsertAgentContext({
      agentContext: { agentId: 'upsert-reads', contextType: 'triage', contextData: { step: 2 }, etag: created.agentContext!.etag },
      requestId,
    });
    expect(replayed.agentContext!.decisions).toHaveLength(2);
    await agent.getAgentContext({ agentId: 'upsert-reads' });
    expect((await accessEventsAbout(patientId)).map((event) => event.method)).toEqual([
      upsertMethod,
      upsertMethod,
      '/clinical.audit.v1.AgentContextService/GetAgentContext',
    ]);
  });

  it('serves and audits a decision whose stored patient_id is not a UUID, without failing the read or the auditing', async () => {
    const patientId = await insertPatient(admin, 'SITE-A');
    await agent.upsertAgentContext({ agentContext: { agentId: 'sql-bot', contextType: 'triage', contextData: {} } });
    await agent.appendAgentDecision({ agentId: 'sql-bot', decision: agentContextV1.AgentDecision.fromPartial({ action: 'flag', patientId }) });
    // Written by SQL around the triggers (as a restore or a maintenance script might): not a UUID.
    await admin.query("SET session_replication_role = replica");
    try {
      await admin.query(
        `UPDATE mcp_context SET decisions = decisions || jsonb_build_array(jsonb_build_object(
           'decision_id', 'legacy-1', 'sequence_number', 2, 'decision_time', now(), 'action', 'legacy',
           'patient_id', 'RA001-001', 'created_by', 'script'))
          WHERE agent_id = 'sql-bot'`,
      );
    } finally {
      await admin.query('SET session_replication_role = DEFAULT');
    }
    // A caller of one site: no INVALID_ARGUMENT; the decision names no patient of its sites, so it is left out.
    const siteA = (await agent.getAgentContext({ agentId: 'sql-bot' })).agentContext!;
    expect(siteA.decisions.map((decision) => decision.action)).toEqual(['flag']);
    expect(siteA.decisionCount).toBe(1);
    // A caller of every site sees it, and its read is audited (the text kept in the event).
    const everywhere = clientOf(await service.token({ sub: 'agent-all-2', roles: ['agent'], sites: '*' }));
    const all = (await everywhere.getAgentContext({ agentId: 'sql-bot' })).agentContext!;
    expect(all.decisions.map((decision) => decision.patientId)).toEqual([patientId, 'RA001-001']);
    await service.running.runtime.accessRecorder.flush();
    expect(service.running.runtime.accessRecorder.stats()).toMatchObject({ pending: 0, dropped: 0 });
    const { rows } = await admin.query(
      `SELECT entity_key, patient_id, payload ->> 'patient_key' AS patient_key FROM audit_events
        WHERE event_type = 'DATA_ACCESS' AND user_id = 'agent-all-2' ORDER BY event_seq`,
    );
    expect(rows).toEqual(
      expect.arrayContaining([
        { entity_key: 'legacy-1', patient_id: null, patient_key: 'RA001-001' },
        expect.objectContaining({ patient_id: patientId, patient_key: null }),
      ]),
    );
    expect(rows).toHaveLength(2);
  });
});
