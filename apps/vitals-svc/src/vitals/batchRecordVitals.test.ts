import { randomUUID } from 'node:crypto';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectStatus, reading, startVitalsTestBed, type VitalsTestBed } from '../testing/vitalsTestKit.js';

let bed: VitalsTestBed;

beforeAll(async () => {
  bed = await startVitalsTestBed();
});

afterAll(async () => {
  await bed?.stop();
});

describe('BatchRecordVitals', () => {
  it('records every reading, in request order, with one audit event per patient', async () => {
    const client = await bed.client({ sub: 'batcher' });
    const [first, second] = [await bed.patient(), await bed.patient({ status: 'SCREENING' })];
    const readings = Array.from({ length: 300 }, (_, index) => reading(index % 3 === 0 ? second : first, 300 - index, { heartRate: 40 + (index % 100) }));
    const { readings: recorded } = await client.batchRecordVitals({ readings });
    expect(recorded).toHaveLength(300);
    expect(recorded.map((item) => item.heartRate)).toEqual(readings.map((item) => item.heartRate));
    expect(new Set(recorded.map((item) => item.vitalId)).size).toBe(300);
    expect(new Set(recorded.map((item) => item.createTime?.getTime())).size).toBe(1);
    expect(await bed.countReadings(first)).toBe(200);
    expect(await bed.countReadings(second)).toBe(100);
    const { rows } = await bed.admin.query(
      `SELECT patient_id, (payload->>'count')::int AS count, user_id FROM audit_events
        WHERE entity_type = 'vital_signs' AND patient_id = ANY($1::uuid[]) ORDER BY count`,
      [[first, second]],
    );
    expect(rows).toEqual([
      { patient_id: second, count: 100, user_id: 'batcher' },
      { patient_id: first, count: 200, user_id: 'batcher' },
    ]);
    const stored = await bed.admin.query('SELECT vital_id FROM vital_signs WHERE vital_id = ANY($1::uuid[])', [
      recorded.map((item) => item.vitalId),
    ]);
    expect(stored.rowCount).toBe(300);
  });

  it('writes nothing when one reading is invalid, and names it by index', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    const readings = Array.from({ length: 20 }, (_, index) => reading(patientId, index + 1));
    readings[12] = { ...readings[12]!, heartRate: 400 };
    const error = await expectStatus(client.batchRecordVitals({ readings }), Status.INVALID_ARGUMENT);
    expect(error.details).toContain('readings[12].heart_rate');
    expect(await bed.countReadings(patientId)).toBe(0);
  });

  it('writes nothing when one patient is inactive or out of reach', async () => {
    const client = await bed.client();
    const active = await bed.patient();
    const withdrawn = await bed.patient({ status: 'WITHDRAWN' });
    const elsewhere = await bed.patient({ siteId: 'SITE-B' });
    await expectStatus(
      client.batchRecordVitals({ readings: [reading(active), reading(active, 2), reading(withdrawn)] }),
      Status.FAILED_PRECONDITION,
    );
    await expectStatus(client.batchRecordVitals({ readings: [reading(active), reading(elsewhere)] }), Status.NOT_FOUND);
    expect(await bed.countReadings(active)).toBe(0);
  });

  it('refuses empty and oversized batches', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    await expectStatus(client.batchRecordVitals({ readings: [] }), Status.INVALID_ARGUMENT);
    const tooMany = Array.from({ length: 5_001 }, () => reading(patientId));
    const error = await expectStatus(client.batchRecordVitals({ readings: tooMany }), Status.INVALID_ARGUMENT);
    expect(error.details).toMatch(/readings: must have at most 5000 entries/);
    const full = Array.from({ length: 5_000 }, (_, index) => reading(patientId, 1 + index / 100));
    await expect(client.batchRecordVitals({ readings: full })).resolves.toMatchObject({ readings: expect.any(Array) });
    expect(await bed.countReadings(patientId)).toBe(5_000);
  });

  it('lists at most 25 violations however many readings are bad, and counts the rest', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    const readings = Array.from({ length: 5_000 }, () => reading(patientId, 1, { heartRate: 1, systolicBp: 1 }));
    const error = await expectStatus(client.batchRecordVitals({ readings }), Status.INVALID_ARGUMENT);
    expect(error.details.split('; ')).toHaveLength(26);
    expect(error.details).toMatch(/and 9975 more violations not listed/);
  });

  it('makes a retry with the same request_id write nothing and return the first response, even concurrently', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    const request = { readings: Array.from({ length: 50 }, (_, index) => reading(patientId, index + 1)), requestId: randomUUID() };
    const [first, concurrent] = await Promise.all([client.batchRecordVitals(request), client.batchRecordVitals(request)]);
    expect(concurrent).toEqual(first);
    expect(await client.batchRecordVitals(request)).toEqual(first);
    expect(await bed.countReadings(patientId)).toBe(50);
    const reused = await expectStatus(
      client.batchRecordVitals({ ...request, readings: request.readings.slice(1) }),
      Status.INVALID_ARGUMENT,
    );
    expect(reused.details).toMatch(/request_id/);
    // Another caller's request_id space is its own.
    const other = await bed.client({ sub: 'someone-else' });
    await other.batchRecordVitals(request);
    expect(await bed.countReadings(patientId)).toBe(100);
  });
});
