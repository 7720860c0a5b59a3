import { randomUUID } from 'node:crypto';
import { agentContextV1, auditV1 } from '@clinical/contracts';
import { expectRetriesIndependentOfWireOrder, startTestService, type TestService } from '@clinical/server-kit/testing';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { auditServiceModule } from './auditServiceModule.js';

// Go randomises map order on every marshal and Python reorders it on copy: a retry must not depend on it,
// nor on the order of the fields themselves, which protobuf leaves free.
let service: TestService;
let agentToken: string;
let adminToken: string;

beforeAll(async () => {
  service = await startTestService(auditServiceModule);
  agentToken = await service.token({ sub: 'wire-order-agent', roles: ['agent'], sites: ['SITE-A'] });
  adminToken = await service.token({ sub: 'wire-order-admin', roles: ['admin'], sites: '*' });
});

afterAll(async () => {
  await service?.stop();
});

const contextData = (step = 1) => ({ step, queue: ['a', 'b'], cursor: { site: 'SITE-A', page: 3, seen: { x: 1, y: 2 } } });

describe('a retry with the same request_id, in another wire order, gets the first response', () => {
  const agents = agentContextV1.AgentContextServiceDefinition;

  it('UpsertAgentContext', async () => {
    const requestId = randomUUID();
    const agentContext = agentContextV1.AgentContext.fromPartial({ agentId: `bot-${requestId.slice(0, 8)}`, contextType: 'monitoring', contextData: contextData() });
    await expectRetriesIndependentOfWireOrder({
      address: service.address,
      token: agentToken,
      service: agents,
      method: agents.methods.upsertAgentContext,
      messages: [{ agentContext, updateMask: undefined, reason: 'first run', requestId }],
      changed: [{ agentContext: { ...agentContext, contextData: contextData(2) }, updateMask: undefined, reason: 'first run', requestId }],
    });
  });

  it('AppendAgentDecision', async () => {
    const agentId = `bot-${randomUUID().slice(0, 8)}`;
    await service.client(agents, agentToken).upsertAgentContext({ agentContext: { agentId, contextType: 'monitoring', contextData: {} } });
    const requestId = randomUUID();
    const decision = agentContextV1.AgentDecision.fromPartial({
      action: 'flag-for-review',
      rationale: 'out of range',
      confidence: 0.75,
      details: { rule: 'bp-high', thresholds: { systolic: 180, diastolic: 110 }, tags: [{ b: 1, a: 2 }] },
    });
    await expectRetriesIndependentOfWireOrder({
      address: service.address,
      token: agentToken,
      service: agents,
      method: agents.methods.appendAgentDecision,
      messages: [{ agentId, decision, requestId }],
      changed: [{ agentId, decision: { ...decision, details: { ...decision.details, rule: 'bp-low' } }, requestId }],
    });
  });

  it('PurgeExpiredAuditEvents', async () => {
    const requestId = randomUUID();
    await expectRetriesIndependentOfWireOrder({
      address: service.address,
      token: adminToken,
      service: auditV1.AuditServiceDefinition,
      method: auditV1.AuditServiceDefinition.methods.purgeExpiredAuditEvents,
      messages: [{ validateOnly: true, reason: 'quarterly retention', requestId }],
      changed: [{ validateOnly: true, reason: 'another reason', requestId }],
    });
  });
});
