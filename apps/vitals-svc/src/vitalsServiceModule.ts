import type { ServiceModule } from '@clinical/server-kit';
import { vitalsService } from './vitalsService.js';

/** vitals-svc: vital-sign ingestion and time-range queries. */
export const vitalsServiceModule: ServiceModule = {
  name: 'vitals-svc',
  createServices: () => [vitalsService()],
};
