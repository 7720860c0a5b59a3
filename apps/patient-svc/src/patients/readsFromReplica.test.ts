import { patientV1 } from '@clinical/contracts';
import { migrate } from '@clinical/db';
import { CONSISTENCY_TOKEN_METADATA } from '@clinical/server-kit';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { startReplicatedDatabase, type ReplicatedDatabase } from '@clinical/testing';
import { createClient, Metadata } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientServiceModule } from '../patientServiceModule.js';
import { newPatient } from '../testing/fixtures.js';

/**
 * patient-svc reading ListPatients from a real streaming standby
 * (DATABASE_REPLICA_URLS): a patient created, or changed, is in the very next
 * listing of a caller that sends back the write's consistency token.
 */
let replicated: ReplicatedDatabase;
let service: TestService;
let client: patientV1.PatientServiceClient;
let authorization: string;

beforeAll(async () => {
  replicated = await startReplicatedDatabase({ migrate });
  service = await startTestService(patientServiceModule, {
    DATABASE_URL: replicated.primaryUrl,
    DATABASE_REPLICA_URLS: replicated.standbyUrl,
    REPLICA_TOKEN_WAIT_MS: '1000',
  });
  authorization = `Bearer ${await service.token({ roles: ['coordinator'], sites: ['SITE-A'] })}`;
  client = createClient(patientV1.PatientServiceDefinition, service.channel);
}, 180_000);

afterAll(async () => {
  await service?.stop();
  await replicated?.remove();
});

describe('ListPatients from a streaming replica', () => {
  it('lists what the caller just created or changed when it sends back the write’s token, read on the standby', async () => {
    const readsBefore = replicated.statementsOnStandby('patients');
    const listed = async (token: string) =>
      (await client.listPatients({ pageSize: 1_000 }, { metadata: Metadata({ authorization, [CONSISTENCY_TOKEN_METADATA]: token }) })).patients;
    for (let round = 1; round <= 10; round += 1) {
      let token = '';
      const onTrailer = (trailer: Metadata) => (token = trailer.get(CONSISTENCY_TOKEN_METADATA) ?? '');
      const { patient } = await client.createPatient({ patient: newPatient() }, { metadata: Metadata({ authorization }), onTrailer });
      expect((await listed(token)).map(({ patientId }) => patientId)).toContain(patient!.patientId);

      await client.updatePatient(
        { patient: { ...patient!, treatmentArm: `ARM-${round}` }, updateMask: ['treatment_arm'], reason: '', requestId: '' },
        { metadata: Metadata({ authorization }), onTrailer },
      );
      expect((await listed(token)).find(({ patientId }) => patientId === patient!.patientId)?.treatmentArm).toBe(`ARM-${round}`);
    }
    expect(replicated.statementsOnStandby('patients')).toBeGreaterThan(readsBefore);
  });
});
