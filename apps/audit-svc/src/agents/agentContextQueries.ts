import { sql, type CommonQueryMethods } from '@clinical/db';
import { accessibleSites, type Principal } from '@clinical/server-kit';
import { z } from 'zod';
import { agentContextRow, storedDecision, type AgentContextRow, type StoredDecision } from './agentContextRecord.js';

/** Whether a stored decision `d` may be shown to `principal`: about no patient, or one at its sites. */
function visibleDecision(principal: Principal) {
  const sites = accessibleSites(principal);
  if (!sites) {
    return sql.fragment`true`;
  }
  return sql.fragment`(coalesce(d.value ->> 'patient_id', '') = ''
    OR EXISTS (SELECT 1 FROM patients AS p
                WHERE p.patient_id = (d.value ->> 'patient_id')::uuid
                  AND p.site_id = ANY(${sql.array([...sites], 'text')})))`;
}

/** The context columns, with the decisions (or only their count) the caller may see. */
function contextColumns(principal: Principal, withDecisions: boolean) {
  const visible = visibleDecision(principal);
  const decisions = withDecisions
    ? sql.fragment`(SELECT jsonb_agg(d.value ORDER BY d.ordinality) FROM jsonb_array_elements(m.decisions) WITH ORDINALITY AS d WHERE ${visible})`
    : sql.fragment`NULL::jsonb`;
  const count = accessibleSites(principal)
    ? sql.fragment`(SELECT count(*) FROM jsonb_array_elements(m.decisions) AS d WHERE ${visible})::int`
    : sql.fragment`jsonb_array_length(m.decisions)`;
  return sql.fragment`
    m.agent_id, m.context_type, m.context_data, ${decisions} AS decisions, ${count} AS decision_count,
    m.created_at, m.last_updated, m.context_version,
    (extract(epoch FROM m.created_at) * 1000000)::int8 AS created_micros
  `;
}

/** The context of `agentId` with the decisions `principal` may see, or null. */
export async function selectAgentContext(
  db: CommonQueryMethods,
  principal: Principal,
  agentId: string,
): Promise<AgentContextRow | null> {
  return db.maybeOne(sql.type(agentContextRow)`
    SELECT ${contextColumns(principal, true)} FROM mcp_context AS m WHERE m.agent_id = ${agentId}
  `);
}

/** Creates a context; null when one exists already. */
export async function insertAgentContext(
  db: CommonQueryMethods,
  agentId: string,
  contextType: string,
  contextData: Record<string, unknown>,
): Promise<boolean> {
  const inserted = await db.maybeOne(sql.type(z.object({ agent_id: z.string() }))`
    INSERT INTO mcp_context (agent_id, context_type, context_data)
    VALUES (${agentId}, ${contextType}, ${sql.jsonb(contextData as never)})
    ON CONFLICT (agent_id) DO NOTHING
    RETURNING agent_id
  `);
  return inserted !== null;
}

/** Replaces context_type and/or context_data if the etag still matches; false otherwise. */
export async function replaceAgentContext(
  db: CommonQueryMethods,
  agentId: string,
  expected: { contextVersion: string; createdMicros: string },
  replacement: { contextType?: string; contextData?: Record<string, unknown> },
): Promise<boolean> {
  const updated = await db.maybeOne(sql.type(z.object({ agent_id: z.string() }))`
    UPDATE mcp_context
       SET context_type = coalesce(${replacement.contextType ?? null}::text, context_type),
           context_data = coalesce(${replacement.contextData ? sql.jsonb(replacement.contextData as never) : null}::jsonb, context_data)
     WHERE agent_id = ${agentId} AND context_version = ${expected.contextVersion}::int8
       AND (extract(epoch FROM created_at) * 1000000)::int8 = ${expected.createdMicros}::int8
    RETURNING agent_id
  `);
  return updated !== null;
}

/** Whether a context exists. */
export async function agentContextExists(db: CommonQueryMethods, agentId: string): Promise<boolean> {
  return db.exists(sql.unsafe`SELECT 1 FROM mcp_context WHERE agent_id = ${agentId}`);
}

/** One page of contexts by agent_id, after `afterAgentId`, optionally of one type; no decisions. */
export async function selectAgentContexts(
  db: CommonQueryMethods,
  principal: Principal,
  contextType: string | undefined,
  afterAgentId: string | undefined,
  limit: number,
): Promise<readonly AgentContextRow[]> {
  const conditions = [sql.fragment`true`];
  if (contextType !== undefined) {
    conditions.push(sql.fragment`m.context_type = ${contextType}`);
  }
  if (afterAgentId !== undefined) {
    conditions.push(sql.fragment`m.agent_id > ${afterAgentId}`);
  }
  return db.any(sql.type(agentContextRow)`
    SELECT ${contextColumns(principal, false)} FROM mcp_context AS m
     WHERE ${sql.join(conditions, sql.fragment` AND `)}
     ORDER BY m.agent_id
     LIMIT ${limit}
  `);
}

export const MAX_DECISIONS = 10_000;

/**
 * Appends a decision in one UPDATE: its sequence number is taken from the
 * array it is appended to, under the row lock, so concurrent appends each
 * land with their own number. Null when the context is missing or full.
 */
export async function appendDecision(
  db: CommonQueryMethods,
  agentId: string,
  decision: Omit<StoredDecision, 'sequence_number' | 'decision_time'>,
): Promise<{ decision: StoredDecision; last_updated: Date } | null> {
  return db.maybeOne(sql.type(z.object({ decision: storedDecision, last_updated: z.date() }))`
    UPDATE mcp_context
       SET decisions = decisions || jsonb_build_array(${sql.jsonb(decision as never)}::jsonb
             || jsonb_build_object('sequence_number', jsonb_array_length(decisions) + 1, 'decision_time', now()))
     WHERE agent_id = ${agentId} AND jsonb_array_length(decisions) < ${MAX_DECISIONS}
    RETURNING decisions -> -1 AS decision, last_updated
  `);
}
