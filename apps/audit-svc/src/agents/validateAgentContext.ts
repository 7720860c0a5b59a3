import type { agentContextV1 } from '@clinical/contracts';
import type { FieldValidator } from '@clinical/server-kit';

export const AGENT_ID = { required: true, max: 100, pattern: /^[A-Za-z0-9_.:@-]+$/, patternDescription: 'may hold letters, digits, "-", "_", ".", ":" and "@"' };
export const CONTEXT_TYPE = { required: true, max: 100, pattern: /^[A-Za-z0-9_.-]+$/, patternDescription: 'may hold letters, digits, "-", "_" and "."' };

/*
 * Limits that keep a whole context within a few MiB of JSON, so that
 * GetAgentContext fits this service's heap (services run with
 * --max-old-space-size=128): context_data at most 256 KiB; at most
 * MAX_DECISIONS (1000, agentContextQueries.ts) decisions, each with an action
 * of at most 200 characters, a rationale of at most 1000 and details of at
 * most 2 KiB, so at most about 3.5 KiB of JSON with its server-set fields
 * (ASCII text). In all: about 3.7 MiB of JSON. Encoded, numbers take several
 * times their JSON, so a full context can pass a client's 4 MiB: then
 * GetAgentContext returns the oldest decisions that fit (agentContextRecord.ts),
 * and the others are read in the audit trail (each append's event holds it).
 */
export const MAX_CONTEXT_DATA_BYTES = 256 * 1024;
export const MAX_ACTION_CHARACTERS = 200;
export const MAX_RATIONALE_CHARACTERS = 1_000;
export const MAX_DETAILS_BYTES = 2 * 1024;
/** Deepest nesting of context_data and details (a request cannot nest past about 32 anyway). */
const MAX_JSON_DEPTH = 32;

/** Checks a context to upsert; violations accumulate in `v`. */
export function validateAgentContext(v: FieldValidator, field: string, context: agentContextV1.AgentContext | undefined): void {
  if (!context) {
    v.add(field, 'is required');
    return;
  }
  v.string(`${field}.agent_id`, context.agentId, AGENT_ID);
  v.string(`${field}.context_type`, context.contextType, CONTEXT_TYPE);
  v.jsonDocument(`${field}.context_data`, context.contextData, { maxBytes: MAX_CONTEXT_DATA_BYTES, maxDepth: MAX_JSON_DEPTH });
  v.string(`${field}.etag`, context.etag, { max: 64 });
}

/** Checks a decision to append; violations accumulate in `v`. */
export function validateDecision(v: FieldValidator, field: string, decision: agentContextV1.AgentDecision | undefined): void {
  if (!decision) {
    v.add(field, 'is required');
    return;
  }
  v.string(`${field}.action`, decision.action, { required: true, max: MAX_ACTION_CHARACTERS });
  v.string(`${field}.rationale`, decision.rationale, { max: MAX_RATIONALE_CHARACTERS });
  if (decision.confidence !== undefined) {
    v.number(`${field}.confidence`, decision.confidence, { min: 0, max: 1 });
  }
  v.uuid(`${field}.patient_id`, decision.patientId, false);
  v.jsonDocument(`${field}.details`, decision.details, { maxBytes: MAX_DETAILS_BYTES, maxDepth: MAX_JSON_DEPTH });
}
