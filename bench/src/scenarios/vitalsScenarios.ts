import type { Scenario } from '../scenario.js';

/** The vitals-svc benchmarks, by name. */
export const vitalsScenarios: Record<string, Scenario> = {};
