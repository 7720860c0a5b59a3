import { patientV1 } from '@clinical/contracts';
import type { CacheCodec } from '@clinical/cache';
import { messageCodec, type ServiceRuntime } from '@clinical/server-kit';

/** Redis key of a patient record. */
export const patientCacheKey = (patientId: string): string => `patient:${patientId}`;

/** Patients are cached as their encoded contract message: compact and fast to decode. */
export const patientCodec: CacheCodec<patientV1.Patient> = messageCodec(patientV1.Patient);

/** Caches patients just written, after their transaction committed (never inside it). */
export async function cacheWrittenPatients(
  runtime: ServiceRuntime,
  written: readonly { patient: patientV1.Patient; rowVersion: string }[],
): Promise<void> {
  await Promise.all(
    written.map(({ patient, rowVersion }) =>
      runtime.cache.store(patientCacheKey(patient.patientId), patientCodec, runtime.config.cacheTtlSeconds.patient, {
        value: patient,
        version: Number(rowVersion),
      }),
    ),
  );
}
