import { serviceBootSuite } from '@clinical/server-kit/testing';
import { status } from '@grpc/grpc-js';
import { vitalsServiceModule } from './vitalsServiceModule.js';

serviceBootSuite(vitalsServiceModule, ['clinical.vitals.v1.VitalsService'], {
  service: 'clinical.vitals.v1.VitalsService',
  method: 'GetLatestVitals',
  request: { patient_id: '6f1c2a52-8a8f-4d0e-9a37-3c1f1f0f6f10' },
  expectedCode: status.NOT_FOUND,
  invalid: { method: 'GetLatestVitals', request: { patient_id: 'not-a-uuid' }, field: 'patient_id' },
});
