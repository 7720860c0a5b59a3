import { agentContextV1 } from '@clinical/contracts';
import { fitPage, RESPONSE_BUDGET_BYTES } from '@clinical/server-kit';
import { z } from 'zod';

/** A decision as stored in mcp_context.decisions (snake_case JSON). */
export const storedDecision = z.object({
  decision_id: z.string(),
  sequence_number: z.number(),
  decision_time: z.string(),
  action: z.string(),
  rationale: z.string().optional(),
  confidence: z.number().optional(),
  patient_id: z.string().optional(),
  details: z.record(z.unknown()).optional(),
  created_by: z.string(),
});
export type StoredDecision = z.infer<typeof storedDecision>;

/** An mcp_context row as the service selects it: decisions already filtered to the caller's sites. */
export const agentContextRow = z.object({
  agent_id: z.string(),
  context_type: z.string(),
  context_data: z.record(z.unknown()),
  decisions: z.array(storedDecision).nullable(),
  decision_count: z.number(),
  created_at: z.date(),
  last_updated: z.date(),
  context_version: z.string(),
  created_micros: z.string(),
});
export type AgentContextRow = z.infer<typeof agentContextRow>;

/**
 * The etag: the version of context_type and context_data (appending a
 * decision leaves it alone), and the context's creation, so that a context
 * deleted and created again never matches an old etag.
 */
export const etagOf = (row: Pick<AgentContextRow, 'context_version' | 'created_micros'>): string =>
  `"${row.context_version}.${row.created_micros}"`;

const fitsInt8 = (digits: string) => BigInt.asIntN(64, BigInt(digits)) === BigInt(digits);

/** The version and creation an etag names, or undefined when it is not one of ours. */
export function parseEtag(etag: string): { contextVersion: string; createdMicros: string } | undefined {
  // Only the form etagOf writes (no leading zeros), within int8.
  const [, contextVersion, createdMicros] = /^"(0|[1-9]\d{0,18})\.(0|-?[1-9]\d{0,18})"$/.exec(etag) ?? [];
  if (!contextVersion || !createdMicros || !fitsInt8(contextVersion) || !fitsInt8(createdMicros)) {
    return undefined;
  }
  return { contextVersion, createdMicros };
}

export function toDecisionMessage(decision: StoredDecision): agentContextV1.AgentDecision {
  return {
    decisionId: decision.decision_id,
    sequenceNumber: String(decision.sequence_number),
    decisionTime: new Date(decision.decision_time),
    action: decision.action,
    rationale: decision.rationale ?? '',
    confidence: decision.confidence,
    patientId: decision.patient_id ?? '',
    details: decision.details,
    createdBy: decision.created_by,
  };
}

export function toAgentContextMessage(row: AgentContextRow): agentContextV1.AgentContext {
  const message: agentContextV1.AgentContext = {
    agentId: row.agent_id,
    contextType: row.context_type,
    contextData: row.context_data,
    decisions: [],
    decisionCount: row.decision_count,
    createTime: row.created_at,
    updateTime: row.last_updated,
    etag: etagOf(row),
  };
  if (row.decisions && row.decisions.length > 0) {
    message.decisions = decisionsThatFit(message, row.decisions);
  }
  return message;
}

/**
 * The oldest of `decisions` that fit, with the rest of `context`, in a
 * response a default client accepts (RESPONSE_BUDGET_BYTES). The write
 * limits count JSON, and a decision's details can take several times their
 * JSON as protobuf, so a full context may not fit; decision_count still
 * counts every decision.
 */
function decisionsThatFit(context: agentContextV1.AgentContext, decisions: readonly StoredDecision[]): agentContextV1.AgentDecision[] {
  const room = RESPONSE_BUDGET_BYTES - agentContextV1.AgentContext.encode(context).finish().length;
  return fitPage(decisions, toDecisionMessage, agentContextV1.AgentDecision, { budget: room }).messages;
}
