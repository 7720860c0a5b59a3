import { agentContextV1 } from '@clinical/contracts';
import { InvalidArgumentError } from '@clinical/errors';
import { FieldValidator, fitPage, pageSizeOf, type Cursor, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { toAgentContextMessage } from './agentContextRecord.js';
import { selectAgentContexts } from './agentContextQueries.js';
import { CONTEXT_TYPE } from './validateAgentContext.js';

const PAGE_SIZE = { defaultSize: 50, maxSize: 500 };
const METHOD = 'ListAgentContexts';

/** The agent_id a decoded page token carries (sealed by the kit's codec; its shape checked again before SQL). */
function agentIdOf(cursor: Cursor): string {
  const [agentId, ...rest] = cursor;
  if (rest.length === 0 && typeof agentId === 'string') {
    return agentId;
  }
  throw new InvalidArgumentError({ field: 'page_token', description: 'is not a token of this request' });
}

/**
 * ListAgentContexts: keyset pages by agent_id, without decisions, ending
 * early once their context_data would exceed LIST_PAGE_BUDGET_BYTES of JSON,
 * or the encoded response what a client accepts (fitPage).
 */
export function listAgentContextsHandler(runtime: ServiceRuntime) {
  return async function listAgentContexts(
    request: agentContextV1.ListAgentContextsRequest,
    context: HandlerContext,
  ): Promise<agentContextV1.ListAgentContextsResponse> {
    const v = new FieldValidator();
    v.string('context_type', request.contextType, { ...CONTEXT_TYPE, required: false });
    if (request.pageSize < 0) {
      v.add('page_size', 'must not be negative');
    }
    v.throwIfInvalid();
    const pageSize = pageSizeOf(request.pageSize, PAGE_SIZE);
    // A token is bound to the method and to the context_type filter.
    const filters = { method: METHOD, contextType: request.contextType };
    const cursor = runtime.pageTokens.decode(request.pageToken, filters);
    const after = cursor ? agentIdOf(cursor) : undefined;
    const { rows: page, more } = await selectAgentContexts(runtime.pool, context.principal, request.contextType || undefined, after, pageSize);
    // The page also ends before the context that would take the response past what a client accepts.
    const fitted = fitPage(page, toAgentContextMessage, agentContextV1.AgentContext);
    const last = fitted.rows[fitted.rows.length - 1];
    return {
      agentContexts: fitted.messages,
      nextPageToken: (more || fitted.trimmed) && last ? runtime.pageTokens.encode([last.agent_id], filters) : '',
    };
  };
}
