import { Status } from 'nice-grpc';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { expectStatus, reading, startVitalsTestBed, type VitalsTestBed } from '../testing/vitalsTestKit.js';

let bed: VitalsTestBed;

beforeAll(async () => {
  bed = await startVitalsTestBed({ RATE_LIMIT_POINTS: '120' });
});

afterAll(async () => {
  await bed?.stop();
});

it('charges bulk ingestion its own cost per call, whatever the number of readings', async () => {
  const client = await bed.client({ sub: 'gateway-1', roles: ['service'], sites: '*' });
  const patientId = await bed.patient();
  const batch = Array.from({ length: 2_000 }, (_, index) => reading(patientId, 1 + index / 100));
  await client.batchRecordVitals({ readings: batch }); // 20 points
  await client.batchRecordVitals({ readings: batch }); // 40
  async function* stream() {
    yield { requestId: '', readings: batch };
    yield { requestId: '', readings: batch };
  }
  await client.streamVitals(stream()); // 90
  expect(await bed.countReadings(patientId)).toBe(8_000);
  await expectStatus(client.streamVitals(stream()), Status.RESOURCE_EXHAUSTED); // 140 > 120
  // Another caller has its own window.
  const other = await bed.client({ sub: 'gateway-2', roles: ['service'], sites: '*' });
  await expect(other.recordVitals({ reading: reading(patientId) })).resolves.toBeDefined();
  expect(await bed.countReadings(patientId)).toBe(8_001);
});
