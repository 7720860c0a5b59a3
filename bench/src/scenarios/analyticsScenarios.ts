import type { Scenario } from '../scenario.js';

/** The analytics-svc benchmarks, by name. */
export const analyticsScenarios: Record<string, Scenario> = {};
