import { serviceBootSuite } from '@clinical/server-kit/testing';
import { status } from '@grpc/grpc-js';
import { analyticsServiceModule } from './analyticsServiceModule.js';

serviceBootSuite(analyticsServiceModule, ['clinical.analytics.v1.AnalyticsService'], {
  service: 'clinical.analytics.v1.AnalyticsService',
  method: 'GetAnalyticsFreshness',
  request: {},
  expectedCode: status.OK,
  invalid: { method: 'GetSiteAnalytics', request: { site_id: '' }, field: 'site_id' },
});
