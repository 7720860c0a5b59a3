import { patientV1 } from '@clinical/contracts';
import { defineService, type ServiceBinding, type ServiceRuntime } from '@clinical/server-kit';
import { batchCreatePatientsHandler } from './patients/batchCreatePatients.js';
import { changePatientStatusHandler } from './patients/changePatientStatus.js';
import { createPatientHandler } from './patients/createPatient.js';
import { getPatientHandler } from './patients/getPatient.js';
import { listPatientsHandler } from './patients/listPatients.js';
import { updatePatientHandler } from './patients/updatePatient.js';

const READERS = ['admin', 'coordinator', 'investigator', 'monitor'] as const;
const WRITERS = ['admin', 'coordinator', 'investigator'] as const;

/** clinical.patient.v1.PatientService bound to its handlers and method policies. */
export function patientService(runtime: ServiceRuntime): ServiceBinding {
  return defineService(
    patientV1.PatientServiceDefinition,
    {
      createPatient: createPatientHandler(runtime),
      getPatient: getPatientHandler(runtime),
      batchCreatePatients: batchCreatePatientsHandler(runtime),
      listPatients: listPatientsHandler(runtime),
      updatePatient: updatePatientHandler(runtime),
      changePatientStatus: changePatientStatusHandler(runtime),
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
