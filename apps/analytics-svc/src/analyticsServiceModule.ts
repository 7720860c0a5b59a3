import type { ServiceModule } from '@clinical/server-kit';
import { analyticsService } from './analyticsService.js';

/** analytics-svc: per-site analytics from the materialized view it owns. */
export const analyticsServiceModule: ServiceModule = {
  name: 'analytics-svc',
  createServices: () => [analyticsService()],
};
