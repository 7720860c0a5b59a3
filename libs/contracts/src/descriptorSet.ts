import { descriptorSetBase64 } from './gen/descriptorSet.js';

/** The encoded google.protobuf.FileDescriptorSet of all contracts (with comments), for server reflection. */
export const descriptorSet: Uint8Array = Buffer.from(descriptorSetBase64, 'base64');

/** Fully qualified names of the services of each area. */
export const serviceNames = {
  patient: ['clinical.patient.v1.PatientService', 'clinical.patient.v1.DocumentService'],
  vitals: ['clinical.vitals.v1.VitalsService'],
  audit: ['clinical.audit.v1.AuditService', 'clinical.audit.v1.AgentContextService', 'clinical.audit.v1.SessionService'],
  analytics: ['clinical.analytics.v1.AnalyticsService'],
} as const;
