import { patientV1 } from '@clinical/contracts';
import { describe, expect, it } from 'vitest';
import { newPatient } from '../testing/fixtures.js';
import { encodedPatientCodec, encodePatient, getPatientResponseBytes, patientCodec } from './patientCache.js';

const encodedResponse = (patient: patientV1.Patient) =>
  patientV1.GetPatientResponse.encode(patientV1.GetPatientResponse.fromPartial({ patient })).finish();

describe('GetPatient answered from cached bytes', () => {
  const patient = newPatient({
    patientId: '0b9c7c9e-7f43-4c55-9a57-2f9d1b9a3c11',
    createTime: new Date('2024-01-15T10:20:30.123Z'),
    updateTime: new Date('2024-02-01T00:00:00.5Z'),
    etag: '"42"',
    status: patientV1.PatientStatus.PATIENT_STATUS_ENROLLED,
  });

  it('is byte for byte what encoding the response would send, after a fill and after a hit', () => {
    expect(Buffer.from(getPatientResponseBytes(encodePatient(patient)))).toEqual(Buffer.from(encodedResponse(patient)));
    const hit = encodedPatientCodec.decode(patientCodec.encode(patient));
    expect(hit.patient).toEqual(patient);
    expect(Buffer.from(getPatientResponseBytes(hit))).toEqual(Buffer.from(encodedResponse(patient)));
  });

  it('holds for a patient with nothing but its id', () => {
    const bare = patientV1.Patient.fromPartial({ patientId: patient.patientId });
    expect(Buffer.from(getPatientResponseBytes(encodePatient(bare)))).toEqual(Buffer.from(encodedResponse(bare)));
  });
});
