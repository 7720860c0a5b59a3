import { patientV1 } from '@clinical/contracts';
import { patientServicePolicies } from '@clinical/method-policies';
import { answeringConsistencyToken, defineService, type ServiceBinding, type ServiceRuntime } from '@clinical/server-kit';
import { batchCreatePatientsHandler } from './patients/batchCreatePatients.js';
import { changePatientStatusHandler } from './patients/changePatientStatus.js';
import { createPatientHandler } from './patients/createPatient.js';
import { getPatientHandler } from './patients/getPatient.js';
import { listPatientsHandler } from './patients/listPatients.js';
import { updatePatientHandler } from './patients/updatePatient.js';

/** clinical.patient.v1.PatientService bound to its handlers and method policies. */
export function patientService(runtime: ServiceRuntime): ServiceBinding {
  return defineService(
    patientV1.PatientServiceDefinition,
    {
      createPatient: answeringConsistencyToken(runtime, createPatientHandler(runtime)),
      getPatient: getPatientHandler(runtime),
      batchCreatePatients: answeringConsistencyToken(runtime, batchCreatePatientsHandler(runtime)),
      listPatients: listPatientsHandler(runtime),
      updatePatient: answeringConsistencyToken(runtime, updatePatientHandler(runtime)),
      changePatientStatus: answeringConsistencyToken(runtime, changePatientStatusHandler(runtime)),
    },
    patientServicePolicies,
  );
}
