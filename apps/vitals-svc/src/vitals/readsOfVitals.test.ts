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

const DAY = Date.UTC(2025, 4, 1);

/** Inserts readings in SQL, some sharing a measurement_time to the microsecond (ties broken by vital_id). */
async function seedDay(patientId: string): Promise<void> {
  await bed.admin.query(
    `INSERT INTO vital_signs (patient_id, measurement_time, heart_rate, systolic_bp, diastolic_bp, temperature)
     SELECT $1, timestamptz '2025-05-01 00:00:00+00' + make_interval(secs => (g / 3) * 600.000123), 50 + g % 50,
            CASE WHEN g % 2 = 0 THEN 120 END, CASE WHEN g % 2 = 0 THEN 70 END, 36.5 + (g % 3) / 10.0
       FROM generate_series(0, 431) AS g`,
    [patientId],
  );
}

async function expectedOrder(patientId: string, from: string, to: string): Promise<string[]> {
  const { rows } = await bed.admin.query<{ vital_id: string }>(
    `SELECT vital_id FROM vital_signs WHERE patient_id = $1 AND measurement_time >= $2 AND measurement_time < $3
      ORDER BY measurement_time DESC, vital_id DESC`,
    [patientId, from, to],
  );
  return rows.map((row) => row.vital_id);
}

describe('ListVitals', () => {
  it('walks a day in keyset pages, newest first, ties by vital_id, without gaps or repeats', async () => {
    const client = await bed.client({ roles: ['monitor'] });
    const patientId = await bed.patient();
    await seedDay(patientId);
    const startTime = new Date(DAY + 3_600_000);
    const endTime = new Date(DAY + 20 * 3_600_000);
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await client.listVitals({ patientId, startTime, endTime, pageSize: 37, pageToken });
      expect(page.readings.length).toBeLessThanOrEqual(37);
      seen.push(...page.readings.map((item) => item.vitalId));
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken);
    const expected = await expectedOrder(patientId, startTime.toISOString(), endTime.toISOString());
    expect(seen).toEqual(expected);
    expect(pages).toBe(Math.ceil(expected.length / 37));
  });

  it('applies the default and maximum page sizes, and refuses a negative one', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    await seedDay(patientId);
    expect((await client.listVitals({ patientId })).readings).toHaveLength(100);
    const big = await client.listVitals({ patientId, pageSize: 5_000 });
    expect(big.readings).toHaveLength(432);
    expect(big.nextPageToken).toBe('');
    await expectStatus(client.listVitals({ patientId, pageSize: -1 }), Status.INVALID_ARGUMENT);
  });

  it('ends a page where device_data would take the response past 4 MiB, and walks every reading once', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    // 300 readings with 15 KB of device_data each: 4.5 MB, sent in batches under the request limit.
    const readings = Array.from({ length: 300 }, (_, index) => reading(patientId, 10 + index, { deviceData: { trace: 'x'.repeat(15_000) } }));
    for (let start = 0; start < readings.length; start += 100) {
      await client.batchRecordVitals({ readings: readings.slice(start, start + 100), requestId: '' });
    }
    // Through the test client's default 4 MiB limit.
    const pages: number[] = [];
    let pageToken = '';
    do {
      const page = await client.listVitals({ patientId, pageSize: 1_000, pageToken });
      pages.push(page.readings.length);
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(pages.length).toBe(2);
    expect(pages.reduce((sum, size) => sum + size, 0)).toBe(300);
  });

  it('refuses forged tokens and tokens reused with other filters', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    await seedDay(patientId);
    const first = await client.listVitals({ patientId, pageSize: 10 });
    const token = first.nextPageToken;
    expect(token).not.toBe('');
    await expect(client.listVitals({ patientId, pageSize: 20, pageToken: token })).resolves.toBeDefined();
    const reuse = await expectStatus(
      client.listVitals({ patientId, pageSize: 10, pageToken: token, startTime: new Date(DAY) }),
      Status.INVALID_ARGUMENT,
    );
    expect(reuse.details).toMatch(/page_token/);
    const otherPatient = await bed.patient();
    await expectStatus(client.listVitals({ patientId: otherPatient, pageToken: token }), Status.INVALID_ARGUMENT);
    const bytes = Buffer.from(token, 'base64url');
    const edited = Buffer.from(bytes);
    edited[bytes.length - 1] = (edited[bytes.length - 1] ?? 0) ^ 0x01;
    const forgedCursor = Buffer.from(JSON.stringify({ c: ['2030-01-01 00:00:00.000000', patientId], f: 'x' })).toString('base64url');
    for (const forged of [edited.toString('base64url'), forgedCursor, token.slice(0, -3), 'garbage', '..', 'x'.repeat(10_000)]) {
      const error = await expectStatus(client.listVitals({ patientId, pageToken: forged }), Status.INVALID_ARGUMENT);
      expect(error.details).toMatch(/page_token/);
    }
  });

  it('checks the time range and the patient id', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    const at = new Date(DAY);
    expect(
      (await expectStatus(client.listVitals({ patientId, startTime: at, endTime: at }), Status.INVALID_ARGUMENT)).details,
    ).toMatch(/end_time/);
    expect((await expectStatus(client.listVitals({ patientId: 'nope' }), Status.INVALID_ARGUMENT)).details).toMatch(/patient_id/);
    // Instants PostgreSQL cannot take: year 0 and year 10000.
    const yearZero = new Date(Date.parse('0001-01-01T00:00:00Z') - 1);
    const year10000 = new Date(Date.UTC(10_000, 0, 1));
    expect((await expectStatus(client.listVitals({ patientId, startTime: yearZero }), Status.INVALID_ARGUMENT)).details).toMatch(
      /^start_time: must be between 0001/,
    );
    expect((await expectStatus(client.summarizeVitals({ patientId, endTime: year10000 }), Status.INVALID_ARGUMENT)).details).toMatch(
      /^end_time: must be between 0001/,
    );
  });
});

describe('reads are site-scoped and audited', () => {
  it('answers a patient at another site like a missing one, for every read', async () => {
    const siteB = await bed.client({ sites: ['SITE-B'] });
    const patientId = await bed.patient({ siteId: 'SITE-A' });
    for (const call of [
      () => siteB.listVitals({ patientId }),
      () => siteB.getLatestVitals({ patientId }),
      () => siteB.summarizeVitals({ patientId }),
    ]) {
      const hidden = await expectStatus(call(), Status.NOT_FOUND);
      expect(hidden.details).toBe(`patient ${patientId} not found`);
    }
    const missing = randomUUID();
    expect((await expectStatus(siteB.getLatestVitals({ patientId: missing }), Status.NOT_FOUND)).details).toBe(
      `patient ${missing} not found`,
    );
  });

  it('records one access event per read, naming the patient, the method and the caller', async () => {
    const client = await bed.client({ sub: 'monitor-9', roles: ['monitor'] });
    const patientId = await bed.patient();
    await seedDay(patientId);
    await client.listVitals({ patientId, pageSize: 50 });
    await client.getLatestVitals({ patientId });
    await client.summarizeVitals({ patientId });
    await bed.service.running.runtime.accessRecorder.flush();
    const { rows } = await bed.admin.query(
      `SELECT user_id, entity_type, payload->>'method' AS method FROM audit_events
        WHERE event_type = 'DATA_ACCESS' AND patient_id = $1 ORDER BY event_seq`,
      [patientId],
    );
    expect(rows).toEqual(
      ['ListVitals', 'GetLatestVitals', 'SummarizeVitals'].map((method) => ({
        user_id: 'monitor-9',
        entity_type: 'vital_signs',
        method: `/clinical.vitals.v1.VitalsService/${method}`,
      })),
    );
  });
});

describe('GetLatestVitals', () => {
  it('returns the reading with the greatest time, then the greatest id; nothing for a patient without readings', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    expect((await client.getLatestVitals({ patientId })).reading).toBeUndefined();
    await seedDay(patientId);
    const { rows } = await bed.admin.query<{ vital_id: string }>(
      'SELECT vital_id FROM vital_signs WHERE patient_id = $1 ORDER BY measurement_time DESC, vital_id DESC LIMIT 1',
      [patientId],
    );
    const { reading: latest } = await client.getLatestVitals({ patientId });
    expect(latest?.vitalId).toBe(rows[0]!.vital_id);
    const recorded = await client.recordVitals({ reading: reading(patientId, 1, { heartRate: 99 }) });
    expect((await client.getLatestVitals({ patientId })).reading).toEqual(recorded.reading);
  });
});

describe('SummarizeVitals', () => {
  it('computes count, min, max and mean per measure in the database, counting only readings that carry it', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    await seedDay(patientId);
    const startTime = new Date(DAY);
    const endTime = new Date(DAY + 12 * 3_600_000);
    const summary = await client.summarizeVitals({ patientId, startTime, endTime });
    const { rows } = await bed.admin.query(
      `SELECT count(*)::text AS n, count(systolic_bp)::text AS sn, avg(heart_rate)::float8 AS hr_mean,
              min(temperature)::float8 AS t_min, max(temperature)::float8 AS t_max,
              min(measurement_time) AS first, max(measurement_time) AS last
         FROM vital_signs WHERE patient_id = $1 AND measurement_time >= $2 AND measurement_time < $3`,
      [patientId, startTime, endTime],
    );
    const expected = rows[0];
    expect(summary.readingCount).toBe(expected.n);
    expect(summary.systolicBp).toEqual({ count: expected.sn, min: 120, max: 120, mean: 120 });
    expect(summary.heartRate?.mean).toBeCloseTo(expected.hr_mean, 9);
    expect(summary.temperatureCelsius).toMatchObject({ min: expected.t_min, max: expected.t_max });
    expect(summary.firstMeasurementTime?.getTime()).toBe(new Date(expected.first).getTime());
    expect(summary.lastMeasurementTime?.getTime()).toBe(Math.floor(new Date(expected.last).getTime()));

    const empty = await client.summarizeVitals({ patientId, startTime: new Date(Date.UTC(2020, 0, 1)), endTime: new Date(Date.UTC(2020, 0, 2)) });
    expect(empty).toEqual({
      readingCount: '0',
      systolicBp: { count: '0' },
      diastolicBp: { count: '0' },
      heartRate: { count: '0' },
      temperatureCelsius: { count: '0' },
      firstMeasurementTime: undefined,
      lastMeasurementTime: undefined,
    });
  });
});
