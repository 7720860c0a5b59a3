import { sql } from '@clinical/db';
import { accessibleSites, type Principal } from '@clinical/server-kit';

/**
 * The events `principal` may see, as a condition on `audit_events AS e`.
 * Events about a patient are visible when the patient is at one of the
 * caller's sites (events of a patient whose row is gone: only to callers of
 * every site). Events about no patient are visible to every auditor, except
 * agent-context changes whose decisions name patients (their events carry
 * the patient when there is exactly one; with several, only callers of every
 * site see them).
 */
export function visibleEventsCondition(principal: Principal) {
  const sites = accessibleSites(principal);
  if (!sites) {
    return sql.fragment`true`;
  }
  return sql.fragment`(
    (e.patient_id IS NULL
      AND NOT (e.entity_type = 'agent_context' AND jsonb_path_exists(e.payload, 'strict $.**.patient_id')))
    OR EXISTS (SELECT 1 FROM patients AS p
                WHERE p.patient_id = e.patient_id AND p.site_id = ANY(${sql.array([...sites], 'text')})))`;
}
