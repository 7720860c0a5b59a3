import { loadConfig } from '@clinical/server-kit';
import { z } from 'zod';

/** analytics-svc's own settings, beside the kit's (README: Configuration). */
export interface AnalyticsConfig {
  /** Time between scheduled refreshes, counted from the start of the last successful one. */
  readonly refreshIntervalMs: number;
  /** Statement timeout of the REFRESH itself (the pool's default is meant for point reads). */
  readonly refreshTimeoutMs: number;
  /** Wait before retrying after the first failed attempt; doubles with each further failure. */
  readonly retryBaseMs: number;
  /** Longest wait between retries. */
  readonly retryMaxMs: number;
  /** Whether this replica runs the refresh schedule (RefreshAnalytics works either way). */
  readonly schedulerEnabled: boolean;
}

const SEVEN_DAYS_SECONDS = 7 * 24 * 3_600;

const variables = z.object({
  ANALYTICS_REFRESH_INTERVAL_SECONDS: z.coerce.number().int().min(1).max(SEVEN_DAYS_SECONDS).default(3_600),
  ANALYTICS_REFRESH_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(SEVEN_DAYS_SECONDS).default(1_800),
  ANALYTICS_REFRESH_RETRY_BASE_MS: z.coerce.number().int().min(10).max(3_600_000).default(5_000),
  ANALYTICS_REFRESH_RETRY_MAX_MS: z.coerce.number().int().min(10).max(SEVEN_DAYS_SECONDS * 1_000).default(300_000),
  ANALYTICS_REFRESH_SCHEDULER: z.enum(['on', 'off']).default('on'),
});

/**
 * Reads analytics-svc's settings from the environment.
 * @throws ConfigError naming each bad variable.
 */
export function loadAnalyticsConfig(env: NodeJS.ProcessEnv = process.env): AnalyticsConfig {
  const parsed = loadConfig(variables, env, (set) => {
    const base = Number(set.ANALYTICS_REFRESH_RETRY_BASE_MS ?? 5_000);
    const max = Number(set.ANALYTICS_REFRESH_RETRY_MAX_MS ?? 300_000);
    return base > max ? ['ANALYTICS_REFRESH_RETRY_MAX_MS: must not be less than ANALYTICS_REFRESH_RETRY_BASE_MS'] : [];
  });
  return {
    refreshIntervalMs: parsed.ANALYTICS_REFRESH_INTERVAL_SECONDS * 1_000,
    refreshTimeoutMs: parsed.ANALYTICS_REFRESH_TIMEOUT_SECONDS * 1_000,
    retryBaseMs: parsed.ANALYTICS_REFRESH_RETRY_BASE_MS,
    retryMaxMs: parsed.ANALYTICS_REFRESH_RETRY_MAX_MS,
    schedulerEnabled: parsed.ANALYTICS_REFRESH_SCHEDULER === 'on',
  };
}
