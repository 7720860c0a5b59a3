import { patientV1 } from '@clinical/contracts';
import type { CacheCodec } from '@clinical/cache';
import { messageCodec, type ServiceRuntime } from '@clinical/server-kit';
import { BinaryWriter } from '@bufbuild/protobuf/wire';

/** Redis key of a patient record. */
export const patientCacheKey = (patientId: string): string => `patient:${patientId}`;

/**
 * A patient with its encoded contract message. The bytes are what the cache
 * holds, and a GetPatient hit answers with them as they are (see
 * getPatientResponseBytes) rather than encoding the record again.
 */
export interface EncodedPatient {
  readonly patient: patientV1.Patient;
  readonly bytes: Uint8Array;
}

export const encodePatient = (patient: patientV1.Patient): EncodedPatient => ({
  patient,
  bytes: patientV1.Patient.encode(patient).finish(),
});

/** Patients are cached as their encoded contract message: compact and fast to decode. */
export const patientCodec: CacheCodec<patientV1.Patient> = messageCodec(patientV1.Patient);

/** The same entries read (and filled) with their bytes kept, for GetPatient. */
export const encodedPatientCodec: CacheCodec<EncodedPatient> = {
  encode: (entry) => entry.bytes,
  decode: (bytes) => ({ patient: patientV1.Patient.decode(bytes), bytes }),
};

/** The bytes of `GetPatientResponse { patient }`: field 1, length-delimited, as its encode writes it. */
export const getPatientResponseBytes = (entry: EncodedPatient): Uint8Array =>
  new BinaryWriter().uint32(10).bytes(entry.bytes).finish();

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

/**
 * Caches what a write of an existing patient answered: the row it wrote
 * (`rowVersion`), after commit. An answer that is the stored first response
 * of its request_id (a retry; no `rowVersion`) removes the entry instead: the
 * attempt that committed may never have cached its row (its process died
 * between the commit and the cache write), so the entry may still hold the
 * record from before the write the caller is now told of. A removal is
 * always safe; storing the old answer could put back a record older than
 * what the database holds by now.
 */
export async function cacheAnsweredPatient(runtime: ServiceRuntime, patient: patientV1.Patient | undefined, rowVersion: string | undefined): Promise<void> {
  if (!patient) {
    return;
  }
  if (rowVersion) {
    await cacheWrittenPatients(runtime, [{ patient, rowVersion }]);
  } else {
    await runtime.cache.invalidate(patientCacheKey(patient.patientId));
  }
}
