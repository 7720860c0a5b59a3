import { agentContextV1 } from '@clinical/contracts';
import { defineService, type ServiceBinding, type ServiceRuntime } from '@clinical/server-kit';
import { appendAgentDecisionHandler } from './agents/appendAgentDecision.js';
import { getAgentContextHandler } from './agents/getAgentContext.js';
import { listAgentContextsHandler } from './agents/listAgentContexts.js';
import { upsertAgentContextHandler } from './agents/upsertAgentContext.js';

const AGENTS = ['agent', 'admin'] as const;

/** clinical.audit.v1.AgentContextService: the context and decisions of AI agents. */
export function agentContextService(runtime: ServiceRuntime): ServiceBinding {
  return defineService(
    agentContextV1.AgentContextServiceDefinition,
    {
      upsertAgentContext: upsertAgentContextHandler(runtime),
      getAgentContext: getAgentContextHandler(runtime),
      listAgentContexts: listAgentContextsHandler(runtime),
      appendAgentDecision: appendAgentDecisionHandler(runtime),
    },
    {
      upsertAgentContext: { roles: AGENTS, cost: 2 },
      // The contract: agent or admin for every method. Auditors read the
      // trail (AuditService), where every change of a context is recorded.
      getAgentContext: { roles: AGENTS, cost: 1 },
      listAgentContexts: { roles: AGENTS, cost: 5 },
      appendAgentDecision: { roles: AGENTS, cost: 2 },
    },
  );
}
