import { agentContextV1 } from '@clinical/contracts';
import { agentContextServicePolicies } from '@clinical/method-policies';
import { defineService, type ServiceBinding, type ServiceRuntime } from '@clinical/server-kit';
import { appendAgentDecisionHandler } from './agents/appendAgentDecision.js';
import { getAgentContextHandler } from './agents/getAgentContext.js';
import { listAgentContextsHandler } from './agents/listAgentContexts.js';
import { upsertAgentContextHandler } from './agents/upsertAgentContext.js';

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
    agentContextServicePolicies,
  );
}
