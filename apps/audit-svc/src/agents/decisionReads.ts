import type { agentContextV1 } from '@clinical/contracts';
import { accessEventsOf, type AccessedEntity, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';

/**
 * Returning decisions about patients is a read of patient data: one access
 * event per patient the returned decisions are about (entity "mcp_context",
 * naming the patient's last decision). GetAgentContext and
 * UpsertAgentContext, which both return a context's decisions, record them.
 * @throws UnavailableError when the access-audit backlog is full: a read
 *   that cannot be audited is not served.
 */
export function recordDecisionReads(
  runtime: ServiceRuntime,
  context: HandlerContext,
  agentContext: agentContextV1.AgentContext | undefined,
): void {
  const byPatient = new Map<string, AccessedEntity>();
  for (const decision of agentContext?.decisions ?? []) {
    if (decision.patientId) {
      byPatient.set(decision.patientId, { entityType: 'mcp_context', entityId: decision.decisionId, patientId: decision.patientId });
    }
  }
  runtime.accessRecorder.record(accessEventsOf(context, [...byPatient.values()]));
}
