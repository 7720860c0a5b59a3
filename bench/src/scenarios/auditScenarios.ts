import type { Scenario } from '../scenario.js';

/** The audit-svc benchmarks, by name. */
export const auditScenarios: Record<string, Scenario> = {};
