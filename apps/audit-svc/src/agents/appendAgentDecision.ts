import { randomUUID } from 'node:crypto';
import { agentContextV1 } from '@clinical/contracts';
import { runIdempotent, sql, withAuditContext } from '@clinical/db';
import { FailedPreconditionError, NotFoundError } from '@clinical/errors';
import {
  auditContextOf,
  canAccessSite,
  FieldValidator,
  idempotencyKeyOf,
  type HandlerContext,
  type ServiceRuntime,
} from '@clinical/server-kit';
import { z } from 'zod';
import { toDecisionMessage, type StoredDecision } from './agentContextRecord.js';
import { agentContextExists, appendDecision, MAX_DECISIONS } from './agentContextQueries.js';
import { AGENT_ID, validateDecision } from './validateAgentContext.js';

const responseCodec = {
  encode: (response: agentContextV1.AppendAgentDecisionResponse) => agentContextV1.AppendAgentDecisionResponse.encode(response).finish(),
  decode: (bytes: Uint8Array) => agentContextV1.AppendAgentDecisionResponse.decode(bytes),
};

/**
 * AppendAgentDecision: one atomic UPDATE appends the decision (concurrent
 * appends all land, each with its own sequence number); the mcp_context
 * trigger audits it, naming the decision's patient.
 */
export function appendAgentDecisionHandler(runtime: ServiceRuntime) {
  return async function appendAgentDecision(
    request: agentContextV1.AppendAgentDecisionRequest,
    context: HandlerContext,
  ): Promise<agentContextV1.AppendAgentDecisionResponse> {
    const v = new FieldValidator();
    v.string('agent_id', request.agentId, AGENT_ID);
    validateDecision(v, 'decision', request.decision);
    v.uuid('request_id', request.requestId, false);
    v.throwIfInvalid();
    const input = request.decision as agentContextV1.AgentDecision;
    const patientId = input.patientId ? input.patientId.toLowerCase() : undefined;

    const idempotencyKey = idempotencyKeyOf(context, request, agentContextV1.AppendAgentDecisionRequest, 'AgentContextService/AppendAgentDecision');
    return withAuditContext(runtime.pool, auditContextOf(context, request), (transaction) =>
      runIdempotent(transaction, idempotencyKey, responseCodec, async () => {
        if (patientId) {
          const siteId = await transaction.maybeOneFirst(sql.type(z.object({ site_id: z.string() }))`
            SELECT site_id FROM patients WHERE patient_id = ${patientId}::uuid
          `);
          if (siteId === null || !canAccessSite(context.principal, siteId)) {
            throw new NotFoundError('patient', patientId);
          }
        }
        const decision: Omit<StoredDecision, 'sequence_number' | 'decision_time'> = {
          decision_id: randomUUID(),
          action: input.action,
          ...(input.rationale ? { rationale: input.rationale } : {}),
          ...(input.confidence !== undefined ? { confidence: input.confidence } : {}),
          ...(patientId ? { patient_id: patientId } : {}),
          ...(input.details && Object.keys(input.details).length > 0 ? { details: input.details } : {}),
          created_by: context.principal.sub,
        };
        const appended = await appendDecision(transaction, request.agentId, decision);
        if (!appended) {
          if (!(await agentContextExists(transaction, request.agentId))) {
            throw new NotFoundError('agent context', request.agentId);
          }
          throw new FailedPreconditionError(`the agent context holds ${MAX_DECISIONS} decisions, the most it may`);
        }
        return { decision: toDecisionMessage(appended.decision), updateTime: appended.last_updated };
      }),
    );
  };
}
