import { randomUUID } from 'node:crypto';
import { sql } from '@clinical/db';
import { Status } from 'nice-grpc';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectStatus, reading, startVitalsTestBed, type VitalsTestBed } from '../testing/vitalsTestKit.js';
import { ReadingViolations } from './readingViolations.js';
import { normalizeReading } from './validateReading.js';
import { newVitalId } from './vitalId.js';
import { insertReading } from './vitalsQueries.js';

let bed: VitalsTestBed;

beforeAll(async () => {
  bed = await startVitalsTestBed();
});

afterAll(async () => {
  await bed?.stop();
});

describe('RecordVitals', () => {
  it('records a reading and returns it as stored, with id and create time', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    const input = reading(patientId, 5, { temperatureCelsius: 36.64, deviceData: { model: 'BP-200', firmware: '1.4.2' } });
    const { reading: recorded } = await client.recordVitals({ reading: input });
    expect(recorded?.vitalId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(recorded).toMatchObject({
      patientId,
      measurementTime: input.measurementTime,
      systolicBp: 120,
      diastolicBp: 80,
      heartRate: 70,
      temperatureCelsius: 36.6,
      deviceData: { model: 'BP-200', firmware: '1.4.2' },
    });
    const utcDay = input.measurementTime!.toISOString().slice(0, 10).split('-').map(Number);
    expect(recorded?.visitDate).toEqual({ year: utcDay[0], month: utcDay[1], day: utcDay[2] });
    expect(recorded?.createTime).toBeInstanceOf(Date);
    const { rows } = await bed.admin.query('SELECT temperature::text AS t, data_batch FROM vital_signs WHERE vital_id = $1', [
      recorded!.vitalId,
    ]);
    expect(rows).toEqual([{ t: '36.6', data_batch: { model: 'BP-200', firmware: '1.4.2' } }]);
  });

  it("accepts a visit_date of tomorrow (UTC): a site's day may run ahead of UTC's", async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    const at = new Date(Date.now() + 86_400_000);
    const visitDate = { year: at.getUTCFullYear(), month: at.getUTCMonth() + 1, day: at.getUTCDate() };
    const { reading: recorded } = await client.recordVitals({ reading: reading(patientId, 1, { visitDate }) });
    expect(recorded?.visitDate).toEqual(visitDate);
  });

  it('keeps measures that were not taken unset, not zero', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    const { reading: recorded } = await client.recordVitals({
      reading: { ...reading(patientId), systolicBp: undefined, diastolicBp: undefined, temperatureCelsius: undefined, heartRate: 64 },
    });
    expect(recorded?.heartRate).toBe(64);
    expect(recorded?.systolicBp).toBeUndefined();
    expect(recorded?.temperatureCelsius).toBeUndefined();
  });

  it('writes one audit event naming actor, request and trace, in the same transaction', async () => {
    const client = await bed.client({ sub: 'nurse-7' });
    const patientId = await bed.patient();
    const requestId = randomUUID();
    await client.recordVitals({ reading: reading(patientId), requestId });
    const { rows } = await bed.admin.query(
      `SELECT user_id, request_id, trace_id, db_role, action, payload FROM audit_events
        WHERE entity_type = 'vital_signs' AND patient_id = $1`,
      [patientId],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ user_id: 'nurse-7', request_id: requestId, db_role: 'clinical_vitals_svc', action: 'INSERT' });
    expect(rows[0].payload.count).toBe(1);
    expect(rows[0].trace_id).toMatch(/^[0-9a-f]{32}$/);
  });

  it('audits a reading without request_id too, its context set by the statement itself', async () => {
    const client = await bed.client({ sub: 'nurse-8' });
    const patientId = await bed.patient();
    await client.recordVitals({ reading: reading(patientId) });
    const { rows } = await bed.admin.query(
      `SELECT user_id, request_id, trace_id, ip_address::text AS ip, db_role, (payload->>'count')::int AS count FROM audit_events
        WHERE entity_type = 'vital_signs' AND patient_id = $1`,
      [patientId],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ user_id: 'nurse-8', request_id: null, db_role: 'clinical_vitals_svc', count: 1 });
    expect(rows[0].trace_id).toMatch(/^[0-9a-f]{32}$/);
  });

  it("keeps a statement's audit context to its own transaction: nothing leaks to the connection's next one", async () => {
    const patientId = await bed.patient();
    const normalized = normalizeReading(new ReadingViolations(), 'reading', reading(patientId), Date.now())!;
    const after = await bed.service.running.runtime.pool.connect(async (connection) => {
      await insertReading(connection, newVitalId(), normalized, null, { userId: 'someone', traceId: 'f'.repeat(32) });
      return connection.oneFirst(sql.type(z.object({ user_id: z.string().nullable() }))`SELECT current_setting('app.user_id', true) AS user_id`);
    });
    expect(after ?? '').toBe('');
  });

  it('returns the first reading to a retry with the same request_id, and refuses the id for another reading', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    const request = { reading: reading(patientId), requestId: randomUUID() };
    const first = await client.recordVitals(request);
    const retry = await client.recordVitals(request);
    expect(retry).toEqual(first);
    expect(await bed.countReadings(patientId)).toBe(1);
    const reused = await expectStatus(
      client.recordVitals({ ...request, reading: reading(patientId, 2) }),
      Status.INVALID_ARGUMENT,
    );
    expect(reused.details).toMatch(/request_id/);
  });

  it('refuses a patient at another site exactly like one that does not exist, and an inactive patient', async () => {
    const siteB = await bed.client({ sites: ['SITE-B'] });
    const patientId = await bed.patient({ siteId: 'SITE-A' });
    const hidden = await expectStatus(siteB.recordVitals({ reading: reading(patientId) }), Status.NOT_FOUND);
    const missingId = randomUUID();
    const missing = await expectStatus(siteB.recordVitals({ reading: reading(missingId) }), Status.NOT_FOUND);
    expect(hidden.details.replace(patientId, 'ID')).toBe(missing.details.replace(missingId, 'ID'));

    const client = await bed.client();
    for (const status of ['WITHDRAWN', 'COMPLETED', 'SCREEN_FAILED']) {
      const inactive = await bed.patient({ status });
      await expectStatus(client.recordVitals({ reading: reading(inactive) }), Status.FAILED_PRECONDITION);
    }
    const screening = await bed.patient({ status: 'SCREENING' });
    await expect(client.recordVitals({ reading: reading(screening) })).resolves.toBeDefined();
    expect(await bed.countReadings(patientId)).toBe(0);
  });

  it('lets writers write and refuses monitors', async () => {
    const patientId = await bed.patient();
    const monitor = await bed.client({ roles: ['monitor'] });
    await expectStatus(monitor.recordVitals({ reading: reading(patientId) }), Status.PERMISSION_DENIED);
    const device = await bed.client({ roles: ['service'], sites: '*' });
    await expect(device.recordVitals({ reading: reading(patientId) })).resolves.toBeDefined();
  });
});
