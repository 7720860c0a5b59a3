import { vitalsV1 } from '@clinical/contracts';
import { migrate } from '@clinical/db';
import { CONSISTENCY_TOKEN_METADATA } from '@clinical/server-kit';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { startReplicatedDatabase, type ReplicatedDatabase } from '@clinical/testing';
import { ClientError, createClient, Metadata, Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vitalsServiceModule } from '../vitalsServiceModule.js';

/**
 * vitals-svc over a PostgreSQL primary of its own and a real streaming
 * standby of it (pg_basebackup -R), reading from the standby
 * (DATABASE_REPLICA_URLS): a caller that sends back the token its write
 * returned reads that write straight away; and with the standby gone, reads
 * go to the primary.
 */
let replicated: ReplicatedDatabase;
let service: TestService;
let client: vitalsV1.VitalsServiceClient;
let authorization: string;
let patientId: string;

/** Records a reading and returns the consistency token its answer carried. */
async function record(measurementTime: Date, heartRate: number): Promise<string> {
  let token: string | undefined;
  await client.recordVitals(
    { reading: { patientId, measurementTime, heartRate } },
    { metadata: Metadata({ authorization }), onTrailer: (trailer) => (token = trailer.get(CONSISTENCY_TOKEN_METADATA)) },
  );
  expect(token).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
  return token!;
}

const withToken = (token: string | undefined) => ({
  metadata: Metadata({ authorization, ...(token ? { [CONSISTENCY_TOKEN_METADATA]: token } : {}) }),
});

beforeAll(async () => {
  replicated = await startReplicatedDatabase({ migrate });
  const owner = new pg.Client({ connectionString: replicated.primaryUrl });
  await owner.connect();
  const { rows } = await owner.query<{ patient_id: string }>(
    `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date) VALUES ('RP-1', 'SITE-A', 'RA001', '2024-01-15') RETURNING patient_id`,
  );
  patientId = rows[0]!.patient_id;
  await owner.end();

  service = await startTestService(vitalsServiceModule, {
    DATABASE_URL: replicated.primaryUrl,
    DATABASE_REPLICA_URLS: replicated.standbyUrl,
    REPLICA_MAX_LAG_MS: '1000',
    REPLICA_TOKEN_WAIT_MS: '1000',
  });
  authorization = `Bearer ${await service.token({ roles: ['coordinator'], sites: ['SITE-A'] })}`;
  client = createClient(vitalsV1.VitalsServiceDefinition, service.channel);
}, 180_000);

afterAll(async () => {
  await service?.stop();
  await replicated?.remove();
});

describe('reads from a streaming replica', () => {
  it('return the caller’s own write at once when the caller sends back its token, read on the standby', async () => {
    const readsBefore = replicated.statementsOnStandby('vital_signs');
    const start = Date.now() - 3_600_000;
    for (let round = 1; round <= 20; round += 1) {
      const measurementTime = new Date(start + round * 1_000);
      const token = await record(measurementTime, 60 + round);

      const { reading } = await client.getLatestVitals({ patientId }, withToken(token));
      expect(reading?.measurementTime).toEqual(measurementTime);
      const { readings } = await client.listVitals({ patientId, startTime: new Date(start), endTime: new Date(start + 60_000), pageSize: 100 }, withToken(token));
      expect(readings).toHaveLength(round);
      const summary = await client.summarizeVitals({ patientId, startTime: new Date(start), endTime: new Date(start + 60_000) }, withToken(token));
      expect(Number(summary.readingCount)).toBe(round);
    }
    // The standby answered reads of vital_signs, not only the primary.
    expect(replicated.statementsOnStandby('vital_signs')).toBeGreaterThan(readsBefore);
  });

  it('refuses a consistency token no write returned, naming it', async () => {
    const error = await client.getLatestVitals({ patientId }, withToken('not-a-position')).catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(ClientError);
    expect((error as ClientError).code).toBe(Status.INVALID_ARGUMENT);
    expect((error as ClientError).details).toContain(CONSISTENCY_TOKEN_METADATA);
  });

  it('go to the primary once the standby is killed, without a failed read', async () => {
    await replicated.standby.stop('immediate');
    const measurementTime = new Date(Date.now() - 60_000);
    const token = await record(measurementTime, 99);
    for (let round = 0; round < 10; round += 1) {
      expect((await client.getLatestVitals({ patientId }, withToken(token))).reading?.measurementTime).toEqual(measurementTime);
      expect((await client.getLatestVitals({ patientId }, withToken(undefined))).reading?.measurementTime).toEqual(measurementTime);
    }
  });
});
