import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Path of the `buf build` image of every contract and its imports, with comments. */
const descriptorSetPath = fileURLToPath(new URL('../descriptor/clinical.binpb', import.meta.url));

/** The encoded google.protobuf.FileDescriptorSet of all contracts, for server reflection. */
export const descriptorSet: Uint8Array = readFileSync(descriptorSetPath);

/** Fully qualified names of the services of each area. */
export const serviceNames = {
  patient: ['clinical.patient.v1.PatientService', 'clinical.patient.v1.DocumentService'],
  vitals: ['clinical.vitals.v1.VitalsService'],
  audit: ['clinical.audit.v1.AuditService', 'clinical.audit.v1.AgentContextService'],
  analytics: ['clinical.analytics.v1.AnalyticsService'],
} as const;
