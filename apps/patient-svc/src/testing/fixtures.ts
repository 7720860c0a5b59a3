import { randomUUID } from 'node:crypto';
import { patientV1 } from '@clinical/contracts';

/** A valid new patient at SITE-A with a unique subject number; override what a test needs. */
export function newPatient(overrides: Partial<patientV1.Patient> = {}): patientV1.Patient {
  return patientV1.Patient.fromPartial({
    subjectNumber: `RA001-${randomUUID().slice(0, 8)}`,
    siteId: 'SITE-A',
    protocolId: 'RA001',
    enrollmentDate: { year: 2024, month: 1, day: 15 },
    treatmentArm: 'ARM-1',
    demographics: { sex: patientV1.Sex.SEX_FEMALE, birthYear: 1980, race: ['Asian'], heightCm: 165, weightKg: 60 },
    medicalHistory: {
      conditions: [{ code: 'M06.9', description: 'Rheumatoid arthritis', onsetDate: { year: 2019, month: 3, day: 2 }, ongoing: true }],
      medications: [{ name: 'Methotrexate', dose: '15 mg weekly', startDate: { year: 2019, month: 4, day: 1 } }],
      allergies: ['penicillin'],
    },
    ...overrides,
  });
}

export { expectStatus } from '@clinical/server-kit/testing';
