import { agentContextV1 } from '@clinical/contracts';
import { runIdempotent, withAuditContext } from '@clinical/db';
import { AbortedError, NotFoundError } from '@clinical/errors';
import { auditContextOf, FieldValidator, idempotencyKeyOf, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { parseEtag, toAgentContextMessage } from './agentContextRecord.js';
import { agentContextExists, insertAgentContext, replaceAgentContext, selectAgentContext } from './agentContextQueries.js';
import { recordDecisionReads } from './decisionReads.js';
import { validateAgentContext } from './validateAgentContext.js';

const MASKABLE = ['context_type', 'context_data'];

const responseCodec = {
  encode: (response: agentContextV1.UpsertAgentContextResponse) => agentContextV1.UpsertAgentContextResponse.encode(response).finish(),
  decode: (bytes: Uint8Array) => agentContextV1.UpsertAgentContextResponse.decode(bytes),
};

/**
 * UpsertAgentContext: creates a context (empty etag) or replaces its type
 * and data (the current etag), in a transaction whose audit context the
 * mcp_context trigger records. The response carries the context's decisions
 * the caller may see, so it records their reads as GetAgentContext does
 * (after the commit, also when a retry replays the first response).
 */
export function upsertAgentContextHandler(runtime: ServiceRuntime) {
  return async function upsertAgentContext(
    request: agentContextV1.UpsertAgentContextRequest,
    context: HandlerContext,
  ): Promise<agentContextV1.UpsertAgentContextResponse> {
    const v = new FieldValidator();
    validateAgentContext(v, 'agent_context', request.agentContext);
    const mask = request.updateMask ?? [];
    mask.forEach((path, index) => {
      if (!MASKABLE.includes(path)) {
        v.add(`update_mask.paths[${index}]`, 'must be context_type or context_data');
      }
    });
    v.string('reason', request.reason, { max: 500 });
    v.uuid('request_id', request.requestId, false);
    const input = request.agentContext as agentContextV1.AgentContext;
    const expected = input?.etag ? parseEtag(input.etag) : undefined;
    if (input?.etag && !expected) {
      v.add('agent_context.etag', 'is not an etag of this service');
    }
    v.throwIfInvalid();

    const idempotencyKey = idempotencyKeyOf(context, request, agentContextV1.UpsertAgentContextRequest, 'AgentContextService/UpsertAgentContext');
    const response = await withAuditContext(runtime.pool, auditContextOf(context, request), (transaction) =>
      runIdempotent(transaction, idempotencyKey, responseCodec, async () => {
        const contextData = input.contextData ?? {};
        let created = false;
        if (!expected) {
          created = await insertAgentContext(transaction, input.agentId, input.contextType, contextData);
          if (!created) {
            throw new AbortedError('the agent context exists already: send its current etag to replace it');
          }
        } else {
          const everything = mask.length === 0;
          const replaced = await replaceAgentContext(transaction, input.agentId, expected, {
            contextType: everything || mask.includes('context_type') ? input.contextType : undefined,
            contextData: everything || mask.includes('context_data') ? contextData : undefined,
          });
          if (!replaced) {
            if (!(await agentContextExists(transaction, input.agentId))) {
              throw new NotFoundError('agent context', input.agentId);
            }
            throw new AbortedError('the agent context changed since the etag was read: read it again');
          }
        }
        const row = await selectAgentContext(transaction, context.principal, input.agentId);
        return { agentContext: row ? toAgentContextMessage(row) : undefined, created };
      }),
    );
    recordDecisionReads(runtime, context, response.agentContext);
    return response;
  };
}
