/**
 * The method policies of every service (roles allowed, rate-limit cost) and
 * the list of every served method they produce: the services bind their
 * handlers to these, and the authorization matrix is generated from them.
 */
export {
  agentContextServicePolicies,
  analyticsServicePolicies,
  auditServicePolicies,
  documentServicePolicies,
  patientServicePolicies,
  sessionServicePolicies,
  vitalsServicePolicies,
} from './methodPolicies.js';
export { SERVED_METHODS, type ServedMethod } from './servedMethods.js';
