import type { ServiceModule } from '@clinical/server-kit';
import { documentService } from './documentService.js';
import { patientService } from './patientService.js';

/** patient-svc: trial subjects and their clinical documents. */
export const patientServiceModule: ServiceModule = {
  name: 'patient-svc',
  createServices: (runtime) => [patientService(runtime), documentService(runtime)],
};
