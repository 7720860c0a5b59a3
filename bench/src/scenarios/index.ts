import type { Scenario } from '../scenario.js';
import { analyticsScenarios } from './analyticsScenarios.js';
import { auditScenarios } from './auditScenarios.js';
import { patientScenarios } from './patientScenarios.js';
import { vitalsScenarios } from './vitalsScenarios.js';

/** Every benchmark, by the name `npm run bench -- <name>` takes. */
export const SCENARIOS: Record<string, Scenario> = {
  ...patientScenarios,
  ...vitalsScenarios,
  ...auditScenarios,
  ...analyticsScenarios,
};
