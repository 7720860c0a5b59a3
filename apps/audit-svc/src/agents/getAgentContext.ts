import type { agentContextV1 } from '@clinical/contracts';
import { NotFoundError } from '@clinical/errors';
import { FieldValidator, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { toAgentContextMessage } from './agentContextRecord.js';
import { selectAgentContext } from './agentContextQueries.js';
import { recordDecisionReads } from './decisionReads.js';
import { AGENT_ID } from './validateAgentContext.js';

/**
 * GetAgentContext: the context with the decisions the caller may see, and an
 * access event for each patient those decisions are about.
 */
export function getAgentContextHandler(runtime: ServiceRuntime) {
  return async function getAgentContext(
    request: agentContextV1.GetAgentContextRequest,
    context: HandlerContext,
  ): Promise<agentContextV1.GetAgentContextResponse> {
    const v = new FieldValidator();
    v.string('agent_id', request.agentId, AGENT_ID);
    v.throwIfInvalid();
    const row = await selectAgentContext(runtime.pool, context.principal, request.agentId);
    if (!row) {
      throw new NotFoundError('agent context', request.agentId);
    }
    const agentContext = toAgentContextMessage(row);
    recordDecisionReads(runtime, context, agentContext);
    return { agentContext };
  };
}
