import { randomUUID } from 'node:crypto';
import { vitalsV1 } from '@clinical/contracts';
import { expectRetriesIndependentOfWireOrder } from '@clinical/server-kit/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reading, startVitalsTestBed, type VitalsTestBed } from '../testing/vitalsTestKit.js';

// Go randomises map order on every marshal and Python reorders it on copy: a retry must not depend on it.
let bed: VitalsTestBed;
let token: string;

beforeAll(async () => {
  bed = await startVitalsTestBed();
  token = await bed.service.token({ sub: 'wire-order', roles: ['coordinator'], sites: ['SITE-A'] });
});

afterAll(async () => {
  await bed?.stop();
});

/** device_data with several entries, one of them nested. */
const deviceData = (firmwareMinor = 2) => ({
  model: 'W-200',
  serial: 'SN-1',
  firmware: { major: 4, minor: firmwareMinor, channel: 'stable' },
});

describe('a retry with the same request_id, its maps in another wire order, gets the first response', () => {
  const { methods } = vitalsV1.VitalsServiceDefinition;
  const service = vitalsV1.VitalsServiceDefinition;

  it('RecordVitals', async () => {
    const patientId = await bed.patient();
    const requestId = randomUUID();
    const input = reading(patientId, 3, { deviceData: deviceData() });
    await expectRetriesIndependentOfWireOrder({
      address: bed.service.address,
      token,
      service,
      method: methods.recordVitals,
      messages: [{ reading: input, requestId }],
      changed: [{ reading: { ...input, deviceData: deviceData(3) }, requestId }],
    });
    expect(await bed.countReadings(patientId)).toBe(1);
  });

  it('BatchRecordVitals', async () => {
    const patientId = await bed.patient();
    const requestId = randomUUID();
    const readings = [reading(patientId, 4, { deviceData: deviceData() }), reading(patientId, 2, { deviceData: { b: 1, a: 2 } })];
    await expectRetriesIndependentOfWireOrder({
      address: bed.service.address,
      token,
      service,
      method: methods.batchRecordVitals,
      messages: [{ readings, requestId }],
      changed: [{ readings: [readings[0]!, { ...readings[1]!, deviceData: { b: 1, a: 3 } }], requestId }],
    });
    expect(await bed.countReadings(patientId)).toBe(2);
  });

  it('StreamVitals', async () => {
    const patientId = await bed.patient();
    const requestId = randomUUID();
    const first = [reading(patientId, 6, { deviceData: deviceData() }), reading(patientId, 5)];
    const second = [reading(patientId, 4, { deviceData: { z: true, y: 'x', x: [1, { q: 1, p: 2 }] } })];
    await expectRetriesIndependentOfWireOrder({
      address: bed.service.address,
      token,
      service,
      method: methods.streamVitals,
      messages: [
        { readings: first, requestId },
        { readings: second, requestId: '' },
      ],
      changed: [
        { readings: first, requestId },
        { readings: [{ ...second[0]!, deviceData: { z: true, y: 'x', x: [1, { q: 1, p: 3 }] } }], requestId: '' },
      ],
    });
    expect(await bed.countReadings(patientId)).toBe(3);
  });
});
