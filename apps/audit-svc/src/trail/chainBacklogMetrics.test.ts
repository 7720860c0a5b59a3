import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { samplesOf, startTestMetrics, type TestMetrics } from '@clinical/testing';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuditServiceModule } from '../auditServiceModule.js';
import { connectAs, inAuditedTransaction, insertPatient } from '../testKit.js';
import { countChainBacklog } from './chainBacklogMetrics.js';

let metrics: TestMetrics;
let service: TestService;
let admin: pg.Client;

beforeAll(async () => {
  // Before the service: its instruments are made when it starts.
  metrics = await startTestMetrics();
  // A sealer that does not tick during the test: what is written stays pending.
  service = await startTestService(createAuditServiceModule({ sealIntervalMs: 60_000 }));
  admin = await connectAs(service);
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
  await metrics?.stop();
});

async function writeEvents(count: number): Promise<void> {
  const writer = await connectAs(service, 'clinical_patient_svc');
  try {
    await inAuditedTransaction(writer, { userId: 'backlog-test' }, async () => {
      for (let index = 0; index < count; index += 1) {
        await insertPatient(writer);
      }
    });
  } finally {
    await writer.end();
  }
}

describe('the audit-chain backlog metric', () => {
  it('shows the events waiting for the sealer', async () => {
    await writeEvents(3);
    const { rows } = await admin.query('SELECT count(*)::int AS n FROM audit_chain_pending');
    expect(rows[0].n).toBeGreaterThanOrEqual(3);
    const { samples } = await metrics.scrape();
    expect(samplesOf(samples, 'clinical_audit_chain_pending')).toEqual([expect.objectContaining({ value: rows[0].n })]);
  });

  it('counts with a bound, whatever the queue holds', async () => {
    expect(await countChainBacklog(service.running.runtime.pool, 2)).toBe(2);
  });
});
