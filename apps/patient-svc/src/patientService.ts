import { patientV1 } from '@clinical/contracts';
import { defineService, notYetServed, type ServiceBinding, type ServiceRuntime } from '@clinical/server-kit';
import { createPatientHandler } from './patients/createPatient.js';
import { getPatientHandler } from './patients/getPatient.js';

const READERS = ['admin', 'coordinator', 'investigator', 'monitor'] as const;
const WRITERS = ['admin', 'coordinator', 'investigator'] as const;

/** clinical.patient.v1.PatientService bound to its handlers and method policies. */
export function patientService(runtime: ServiceRuntime): ServiceBinding {
  return defineService(
    patientV1.PatientServiceDefinition,
    {
      createPatient: createPatientHandler(runtime),
      getPatient: getPatientHandler(runtime),
      batchCreatePatients: notYetServed('BatchCreatePatients'),
      listPatients: notYetServed('ListPatients'),
      updatePatient: notYetServed('UpdatePatient'),
      changePatientStatus: notYetServed('ChangePatientStatus'),
    },
    {
      createPatient: { roles: WRITERS, cost: 2 },
      batchCreatePatients: { roles: WRITERS, cost: 50 },
      getPatient: { roles: READERS, cost: 1 },
      listPatients: { roles: READERS, cost: 5 },
      updatePatient: { roles: WRITERS, cost: 2 },
      changePatientStatus: { roles: WRITERS, cost: 2 },
    },
  );
}
