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
    await expectStatus(agent.appendAgentDecision({ agentId: 'missing', decision: agentContextV1.AgentDecision.fromPartial({ action: 'a' }) }), Status.NOT_FOUND);
    const auditor = clientOf(await service.token({ sub: 'aud', roles: ['auditor'], sites: '*' }));
    await expectStatus(auditor.upsertAgentContext({ agentContext: { agentId: 'x', contextType: 'y', contextData: {} } }), Status.PERMISSION_DENIED);
  });
});
