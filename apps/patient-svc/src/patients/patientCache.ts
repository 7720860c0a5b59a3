import { patientV1 } from '@clinical/contracts';
import type { CacheCodec } from '@clinical/cache';

/** Redis key of a patient record. */
export const patientCacheKey = (patientId: string): string => `patient:${patientId}`;

/** Patients are cached as their encoded contract message: compact and fast to decode. */
export const patientCodec: CacheCodec<patientV1.Patient> = {
  encode: (patient) => patientV1.Patient.encode(patient).finish(),
  decode: (bytes) => patientV1.Patient.decode(bytes),
};
