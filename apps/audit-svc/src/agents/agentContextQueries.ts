import { sql, type CommonQueryMethods } from '@clinical/db';
import { accessibleSites, type Principal } from '@clinical/server-kit';
import { z } from 'zod';
import { agentContextRow, storedDecision, type AgentContextRow, type StoredDecision } from './agentContextRecord.js';

/** A context holds at most this many decisions (AppendAgentDecision: FAILED_PRECONDITION beyond). */
export const MAX_DECISIONS = 1_000;

/**
 * Most bytes of decisions (their jsonb text) a read returns. Decisions
 * appended through the service stay far below it (MAX_DECISIONS of at most
 * about 4 KiB each, see validateAgentContext.ts); it bounds what a context
 * written before those limits, or by SQL, can cost this service's heap.
 */
export const MAX_DECISION_BYTES_READ = 8 * 1024 * 1024;

/**
 * Most bytes of context_data (jsonb text) a page of ListAgentContexts
 * carries: a page ends before the context that would take it beyond this sum,
 * unless that context is the page's first. 500 contexts of 256 KiB would
 * otherwise be 125 MiB.
 */
export const LIST_PAGE_BUDGET_BYTES = 3 * 1024 * 1024;

const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

/**
 * A stored decision's patient_id as a uuid, or NULL when it is not one. The
 * service only stores UUIDs there, but rows written by SQL may hold anything:
 * a plain cast would fail the whole read (INVALID_ARGUMENT to a caller who
 * sent nothing wrong).
 */
const decisionPatientId = sql.fragment`(CASE WHEN d.value ->> 'patient_id' ~ ${UUID_PATTERN}
  THEN (d.value ->> 'patient_id')::uuid END)`;

/**
 * Whether a stored decision `d` may be shown to `principal`: about no
 * patient, or one at its sites. A decision whose patient_id is not a UUID
 * names no patient whose site can be checked: only callers of every site see it.
 */
function visibleDecision(principal: Principal) {
  const sites = accessibleSites(principal);
  if (!sites) {
    return sql.fragment`true`;
  }
  return sql.fragment`(coalesce(d.value ->> 'patient_id', '') = ''
    OR EXISTS (SELECT 1 FROM patients AS p
                WHERE p.patient_id = ${decisionPatientId}
                  AND p.site_id = ANY(${sql.array([...sites], 'text')})))`;
}

/**
 * The context columns, with the decisions (or only their count) the caller
 * may see. Decisions come oldest first, at most MAX_DECISIONS of them and
 * MAX_DECISION_BYTES_READ in all (only contexts written before these limits
 * or by SQL hold more; decision_count still counts every visible one).
 */
function contextColumns(principal: Principal, withDecisions: boolean) {
  const visible = visibleDecision(principal);
  const decisions = withDecisions
    ? sql.fragment`(SELECT jsonb_agg(v.value ORDER BY v.ordinality)
         FROM (SELECT d.value, d.ordinality, row_number() OVER w AS position,
                      sum(octet_length(d.value::text)) OVER w AS bytes_through
                 FROM jsonb_array_elements(m.decisions) WITH ORDINALITY AS d
                WHERE ${visible}
               WINDOW w AS (ORDER BY d.ordinality ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS v
        WHERE v.position <= ${MAX_DECISIONS} AND v.bytes_through <= ${MAX_DECISION_BYTES_READ})`
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

/**
 * One page of contexts by agent_id, after `afterAgentId`, optionally of one
 * type, without decisions: at most `pageSize`, and only while their
 * context_data stays within LIST_PAGE_BUDGET_BYTES (the first always).
 * `more` tells whether contexts follow the page.
 */
export async function selectAgentContexts(
  db: CommonQueryMethods,
  principal: Principal,
  contextType: string | undefined,
  afterAgentId: string | undefined,
  pageSize: number,
): Promise<{ rows: readonly AgentContextRow[]; more: boolean }> {
  const conditions = [sql.fragment`true`];
  if (contextType !== undefined) {
    conditions.push(sql.fragment`m.context_type = ${contextType}`);
  }
  if (afterAgentId !== undefined) {
    conditions.push(sql.fragment`m.agent_id > ${afterAgentId}`);
  }
  // The keys and sizes of the next pageSize + 1 contexts (one more tells
  // whether a page follows), the prefix of them that fits, then its columns.
  const rows = await db.any(sql.type(agentContextRow.extend({ more: z.boolean() }))`
    WITH candidates AS (
      SELECT m.agent_id, octet_length(m.context_data::text) AS data_bytes
        FROM mcp_context AS m
       WHERE ${sql.join(conditions, sql.fragment` AND `)}
       ORDER BY m.agent_id
       LIMIT ${pageSize + 1}
    ), sized AS (
      SELECT c.agent_id, row_number() OVER w AS position,
             sum(c.data_bytes) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS bytes_through
        FROM candidates AS c
      WINDOW w AS (ORDER BY c.agent_id)
    ), page AS (
      SELECT s.agent_id FROM sized AS s
       WHERE s.position <= ${pageSize} AND (s.position = 1 OR s.bytes_through <= ${LIST_PAGE_BUDGET_BYTES})
    )
    SELECT ${contextColumns(principal, false)},
           (SELECT count(*) FROM sized) > (SELECT count(*) FROM page) AS more
      FROM page JOIN mcp_context AS m ON m.agent_id = page.agent_id
     ORDER BY m.agent_id
  `);
  return { rows, more: rows[0]?.more ?? false };
}

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
