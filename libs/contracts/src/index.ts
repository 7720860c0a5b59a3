/**
 * The generated gRPC contracts (ts-proto, from proto/) and the descriptor set
 * that server reflection serves. Nothing under src/gen is edited by hand:
 * `npm run proto:generate` rewrites it.
 */
export * as patientV1 from './gen/clinical/patient/v1/patient.js';
export * as documentV1 from './gen/clinical/patient/v1/document.js';
export * as vitalsV1 from './gen/clinical/vitals/v1/vitals.js';
export * as auditV1 from './gen/clinical/audit/v1/audit.js';
export * as agentContextV1 from './gen/clinical/audit/v1/agent_context.js';
export * as sessionV1 from './gen/clinical/audit/v1/session.js';
export * as analyticsV1 from './gen/clinical/analytics/v1/analytics.js';
export { DateMessage } from './gen/google/type/date.js';
export { descriptorSet, serviceNames } from './descriptorSet.js';
