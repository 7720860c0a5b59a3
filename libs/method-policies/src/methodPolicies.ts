import { agentContextV1, analyticsV1, auditV1, documentV1, patientV1, sessionV1, vitalsV1 } from '@clinical/contracts';
import type { MethodPolicyTable } from '@clinical/server-kit';

/*
 * Who may call each method, and what a call costs against the caller's rate
 * limit, for every service: in one place so that a review reads one file, and
 * so that the authorization matrix in SECURITY.md is generated from exactly
 * what the services enforce (`npm run access:matrix`).
 */

const READERS = ['admin', 'coordinator', 'investigator', 'monitor'] as const;
const WRITERS = ['admin', 'coordinator', 'investigator'] as const;
/** Devices and gateways ingest vitals as the `service` principal (a token or a client certificate). */
const VITALS_WRITERS = [...WRITERS, 'service'] as const;
const AUDITORS = ['auditor', 'admin'] as const;
/** Auditors read what agents did through the trail (AuditService), where every change of a context is recorded. */
const AGENTS = ['agent', 'admin'] as const;
const ADMINS = ['admin'] as const;

export const patientServicePolicies: MethodPolicyTable<typeof patientV1.PatientServiceDefinition> = {
  createPatient: { roles: WRITERS, cost: 2 },
  batchCreatePatients: { roles: WRITERS, cost: 50 },
  getPatient: { roles: READERS, cost: 1 },
  listPatients: { roles: READERS, cost: 5 },
  updatePatient: { roles: WRITERS, cost: 2 },
  changePatientStatus: { roles: WRITERS, cost: 2 },
};

export const documentServicePolicies: MethodPolicyTable<typeof documentV1.DocumentServiceDefinition> = {
  createDocument: { roles: WRITERS, cost: 3 },
  getDocument: { roles: READERS, cost: 1 },
  listDocuments: { roles: READERS, cost: 5 },
  createDocumentVersion: { roles: WRITERS, cost: 3 },
  listDocumentVersions: { roles: READERS, cost: 5 },
};

export const vitalsServicePolicies: MethodPolicyTable<typeof vitalsV1.VitalsServiceDefinition> = {
  recordVitals: { roles: VITALS_WRITERS, cost: 1 },
  // Bulk ingestion has its own cost class: one call carries many readings.
  batchRecordVitals: { roles: VITALS_WRITERS, cost: 20 },
  streamVitals: { roles: VITALS_WRITERS, cost: 50 },
  listVitals: { roles: READERS, cost: 5 },
  getLatestVitals: { roles: READERS, cost: 1 },
  summarizeVitals: { roles: READERS, cost: 5 },
};

export const auditServicePolicies: MethodPolicyTable<typeof auditV1.AuditServiceDefinition> = {
  listAuditEvents: { roles: AUDITORS, cost: 5 },
  getAuditEvent: { roles: AUDITORS, cost: 1 },
  verifyAuditTrail: { roles: AUDITORS, cost: 100 },
  purgeExpiredAuditEvents: { roles: ADMINS, cost: 100 },
};

export const agentContextServicePolicies: MethodPolicyTable<typeof agentContextV1.AgentContextServiceDefinition> = {
  upsertAgentContext: { roles: AGENTS, cost: 2 },
  getAgentContext: { roles: AGENTS, cost: 1 },
  listAgentContexts: { roles: AGENTS, cost: 5 },
  appendAgentDecision: { roles: AGENTS, cost: 2 },
};

export const sessionServicePolicies: MethodPolicyTable<typeof sessionV1.SessionServiceDefinition> = {
  listSessions: { roles: ADMINS, cost: 2 },
  revokeSession: { roles: ADMINS, cost: 1 },
  revokeUserSessions: { roles: ADMINS, cost: 2 },
};

export const analyticsServicePolicies: MethodPolicyTable<typeof analyticsV1.AnalyticsServiceDefinition> = {
  getSiteAnalytics: { roles: READERS, cost: 1 },
  listSiteAnalytics: { roles: READERS, cost: 5 },
  refreshAnalytics: { roles: ADMINS, cost: 100 },
  getAnalyticsFreshness: { roles: READERS, cost: 1 },
};
