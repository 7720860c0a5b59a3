import type { agentContextV1 } from '@clinical/contracts';
import { FieldValidator, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { pageSizeOf, type PageTokenCodec } from '../pageTokens.js';
import { toAgentContextMessage } from './agentContextRecord.js';
import { selectAgentContexts } from './agentContextQueries.js';
import { CONTEXT_TYPE } from './validateAgentContext.js';

const PAGE_SIZE = { default: 50, max: 500 };
const METHOD = 'ListAgentContexts';

/** ListAgentContexts: keyset pages by agent_id, without decisions. */
export function listAgentContextsHandler(runtime: ServiceRuntime, pageTokens: PageTokenCodec) {
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
    const filters = { contextType: request.contextType };
    const after = request.pageToken ? pageTokens.decode(METHOD, filters, request.pageToken)[0] : undefined;
    const rows = await selectAgentContexts(runtime.pool, context.principal, request.contextType || undefined, after, pageSize + 1);
    const page = rows.slice(0, pageSize);
    const last = page[page.length - 1];
    return {
      agentContexts: page.map(toAgentContextMessage),
      nextPageToken: rows.length > pageSize && last ? pageTokens.encode(METHOD, filters, [last.agent_id]) : '',
    };
  };
}
