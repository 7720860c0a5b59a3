import { agentContextV1, analyticsV1, auditV1, documentV1, patientV1, sessionV1, vitalsV1 } from '@clinical/contracts';
import type { MethodPolicy } from '@clinical/server-kit';
import {
  agentContextServicePolicies,
  analyticsServicePolicies,
  auditServicePolicies,
  documentServicePolicies,
  patientServicePolicies,
  sessionServicePolicies,
  vitalsServicePolicies,
} from './methodPolicies.js';

/** One method a service serves, with its policy: a row of the authorization matrix. */
export interface ServedMethod {
  /** The process that serves it. */
  readonly server: 'patient-svc' | 'vitals-svc' | 'audit-svc' | 'analytics-svc';
  /** `clinical.patient.v1.PatientService` */
  readonly service: string;
  /** `GetPatient`, as on the wire. */
  readonly method: string;
  /** `getPatient`, as in the generated client. */
  readonly clientMethod: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly policy: MethodPolicy;
}

interface Definition {
  readonly fullName: string;
  readonly methods: Readonly<Record<string, { readonly name: string; readonly requestStream: boolean; readonly responseStream: boolean }>>;
}

function methodsOf(server: ServedMethod['server'], definition: Definition, policies: Readonly<Record<string, MethodPolicy>>): ServedMethod[] {
  return Object.entries(definition.methods).map(([clientMethod, method]) => {
    const policy = policies[clientMethod];
    if (!policy) {
      throw new Error(`${definition.fullName}/${method.name} has no policy`);
    }
    return {
      server,
      service: definition.fullName,
      method: method.name,
      clientMethod,
      requestStream: method.requestStream,
      responseStream: method.responseStream,
      policy,
    };
  });
}

/** Every method of every service, in the order of the published matrix. */
export const SERVED_METHODS: readonly ServedMethod[] = [
  ...methodsOf('patient-svc', patientV1.PatientServiceDefinition, patientServicePolicies),
  ...methodsOf('patient-svc', documentV1.DocumentServiceDefinition, documentServicePolicies),
  ...methodsOf('vitals-svc', vitalsV1.VitalsServiceDefinition, vitalsServicePolicies),
  ...methodsOf('audit-svc', auditV1.AuditServiceDefinition, auditServicePolicies),
  ...methodsOf('audit-svc', agentContextV1.AgentContextServiceDefinition, agentContextServicePolicies),
  ...methodsOf('audit-svc', sessionV1.SessionServiceDefinition, sessionServicePolicies),
  ...methodsOf('analytics-svc', analyticsV1.AnalyticsServiceDefinition, analyticsServicePolicies),
];
