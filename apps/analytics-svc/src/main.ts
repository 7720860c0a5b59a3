import { ConfigError, runServiceMain } from '@clinical/server-kit';
import { loadAnalyticsConfig, type AnalyticsConfig } from './analyticsConfig.js';
import { createAnalyticsServiceModule } from './analyticsServiceModule.js';

let config: AnalyticsConfig;
try {
  config = loadAnalyticsConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`analytics-svc: ${error.message}\n`);
    process.exit(78);
  }
  throw error;
}
await runServiceMain(createAnalyticsServiceModule(config));
