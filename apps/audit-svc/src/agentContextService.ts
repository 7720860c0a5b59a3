import { agentContextV1 } from '@clinical/contracts';
import { defineService, notYetServed, type ServiceBinding } from '@clinical/server-kit';

const AGENTS = ['agent', 'admin'] as const;

/** clinical.audit.v1.AgentContextService: the context and decisions of AI agents. */
export function agentContextService(): ServiceBinding {
  return defineService(
    agentContextV1.AgentContextServiceDefinition,
    {
      upsertAgentContext: notYetServed('UpsertAgentContext'),
      getAgentContext: notYetServed('GetAgentContext'),
      listAgentContexts: notYetServed('ListAgentContexts'),
      appendAgentDecision: notYetServed('AppendAgentDecision'),
    },
    {
      upsertAgentContext: { roles: AGENTS, cost: 2 },
      getAgentContext: { roles: [...AGENTS, 'auditor'], cost: 1 },
      listAgentContexts: { roles: [...AGENTS, 'auditor'], cost: 5 },
      appendAgentDecision: { roles: AGENTS, cost: 2 },
    },
  );
}
