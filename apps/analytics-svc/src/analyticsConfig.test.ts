import { ConfigError } from '@clinical/server-kit';
import { describe, expect, it } from 'vitest';
import { loadAnalyticsConfig } from './analyticsConfig.js';

describe('loadAnalyticsConfig', () => {
  it('refreshes hourly by default, with a long statement timeout and bounded retries', () => {
    expect(loadAnalyticsConfig({})).toEqual({
      refreshIntervalMs: 3_600_000,
      refreshTimeoutMs: 1_800_000,
      retryBaseMs: 5_000,
      retryMaxMs: 300_000,
      schedulerEnabled: true,
    });
  });

  it('takes its settings from ANALYTICS_* variables', () => {
    expect(
      loadAnalyticsConfig({
        ANALYTICS_REFRESH_INTERVAL_SECONDS: '600',
        ANALYTICS_REFRESH_TIMEOUT_SECONDS: '120',
        ANALYTICS_REFRESH_RETRY_BASE_MS: '1000',
        ANALYTICS_REFRESH_RETRY_MAX_MS: '60000',
        ANALYTICS_REFRESH_SCHEDULER: 'off',
      }),
    ).toEqual({ refreshIntervalMs: 600_000, refreshTimeoutMs: 120_000, retryBaseMs: 1_000, retryMaxMs: 60_000, schedulerEnabled: false });
  });

  it('names every bad variable at once', () => {
    let thrown: unknown;
    try {
      loadAnalyticsConfig({
        ANALYTICS_REFRESH_INTERVAL_SECONDS: 'hourly',
        ANALYTICS_REFRESH_TIMEOUT_SECONDS: '0',
        ANALYTICS_REFRESH_SCHEDULER: 'maybe',
        ANALYTICS_REFRESH_RETRY_BASE_MS: '5000',
        ANALYTICS_REFRESH_RETRY_MAX_MS: '100',
      });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    for (const variable of [
      'ANALYTICS_REFRESH_INTERVAL_SECONDS',
      'ANALYTICS_REFRESH_TIMEOUT_SECONDS',
      'ANALYTICS_REFRESH_SCHEDULER',
      'ANALYTICS_REFRESH_RETRY_MAX_MS',
    ]) {
      expect((thrown as ConfigError).message).toContain(variable);
    }
  });
});
