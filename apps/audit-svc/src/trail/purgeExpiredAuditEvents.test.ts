import { auditV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { Status } from 'nice-grpc';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditServiceModule } from '../auditServiceModule.js';
import { connectAs, expectStatus, inAuditedTransaction } from '../testKit.js';

let service: TestService;
let admin: pg.Client;
let audit: auditV1.AuditServiceClient;

/** Events as a service writes them (so they are chained at commit), dated `yearsAgo` years back. */
async function writeEvents(count: number, monthsAgo: number): Promise<void> {
  const writer = await connectAs(service, 'clinical_patient_svc');
  try {
    await inAuditedTransaction(writer, { userId: 'reader' }, async () => {
      await writer.query(
        `INSERT INTO audit_events (event_type, entity_type, entity_id, entity_key, patient_id, user_id, action, payload, "timestamp")
         SELECT 'DATA_ACCESS', 'patient', p, p::text, p, 'reader', 'READ', '{"method": "/x/Get"}',
                date_trunc('month', now()) - make_interval(months => $2) + make_interval(hours => g)
           FROM generate_series(1, $1) AS g, LATERAL (SELECT gen_random_uuid() AS p) AS x`,
        [count, monthsAgo],
      );
    });
  } finally {
    await writer.end();
  }
}

async function countEvents(): Promise<number> {
  const { rows } = await admin.query('SELECT count(*)::int AS n FROM audit_events');
  return rows[0].n as number;
}

beforeAll(async () => {
  service = await startTestService(auditServiceModule);
  admin = await connectAs(service);
  // Three months past the six-year retention, then recent activity.
  await writeEvents(40, 12 * 8);
  await writeEvents(30, 12 * 8 - 1);
  await writeEvents(20, 12 * 7);
  await writeEvents(25, 1);
  // Opening the administrator's session is audited too: after the old events, so that they are the trail's oldest.
  audit = service.client(auditV1.AuditServiceDefinition, await service.token({ sub: 'retention-admin', roles: ['admin'], sites: '*' }));
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

describe('PurgeExpiredAuditEvents', () => {
  it('reports what it would remove without removing it when asked to validate only', async () => {
    const before = await countEvents();
    const plan = await audit.purgeExpiredAuditEvents({ validateOnly: true, requestId: '', reason: 'quarterly retention' });
    expect(Number(plan.purgedEventCount)).toBe(90);
    expect(await countEvents()).toBe(before);
  });

  it('removes the whole months past retention, records the purge, and what remains still verifies', async () => {
    const before = await countEvents();
    const purge = await audit.purgeExpiredAuditEvents({ validateOnly: false, requestId: '', reason: 'quarterly retention' });
    expect(Number(purge.purgedEventCount)).toBe(90);
    expect(purge.anchorHash).toMatch(/^[0-9a-f]{64}$/);
    // The old events are gone, the purge itself is one new event.
    expect(await countEvents()).toBe(before - 90 + 1);
    const { rows } = await admin.query(
      `SELECT action, reason, payload->>'purged_event_count' AS purged FROM audit_events WHERE event_id = $1`,
      [purge.auditEventId],
    );
    expect(rows).toEqual([{ action: 'PURGE', reason: 'quarterly retention', purged: '90' }]);

    const verified = await audit.verifyAuditTrail(auditV1.VerifyAuditTrailRequest.fromPartial({}));
    expect(verified.intact).toBe(true);
    expect(verified.anchorHash).toBe(purge.anchorHash);
    expect(Number(verified.checkedCount)).toBe(before - 90 + 1);
  });

  it('has nothing more to remove right after', async () => {
    const again = await audit.purgeExpiredAuditEvents({ validateOnly: false, requestId: '', reason: 'again' });
    expect(Number(again.purgedEventCount)).toBe(0);
    expect((await audit.verifyAuditTrail(auditV1.VerifyAuditTrailRequest.fromPartial({}))).intact).toBe(true);
  });

  it('is refused to an auditor', async () => {
    const auditor = service.client(auditV1.AuditServiceDefinition, await service.token({ sub: 'auditor', roles: ['auditor'], sites: '*' }));
    await expectStatus(auditor.purgeExpiredAuditEvents({ validateOnly: true, requestId: '', reason: '' }), Status.PERMISSION_DENIED);
  });
});
