import { startTestService, type TestService } from '@clinical/server-kit/testing';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditServiceModule } from '../auditServiceModule.js';
import { sealPendingEvents } from './chainSealer.js';
import { connectAs, inAuditedTransaction, insertPatient, SERVICE_ROLES } from '../testKit.js';

let service: TestService;
let admin: pg.Client;

beforeAll(async () => {
  service = await startTestService(auditServiceModule);
  admin = await connectAs(service);
  const writer = await connectAs(service, 'clinical_patient_svc');
  await inAuditedTransaction(writer, { userId: 'seed' }, async () => {
    await insertPatient(writer);
  });
  await writer.end();
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

describe('the trail is append-only for every application role', () => {
  it.each(SERVICE_ROLES)('refuses UPDATE, DELETE and TRUNCATE of audit rows and chain entries to %s', async (role) => {
    const client = await connectAs(service, role);
    try {
      const assignments: Record<string, string> = {
        audit_events: "user_id = 'forged'",
        audit_chain: 'sequence_number = 0',
        audit_chain_head: 'sequence_number = 0',
        audit_chain_anchors: 'anchor_sequence_number = 0',
      };
      for (const [table, assignment] of Object.entries(assignments)) {
        await expect(client.query(`UPDATE ${table} SET ${assignment}`)).rejects.toThrow(
          /permission denied|append-only/,
        );
        await expect(client.query(`DELETE FROM ${table}`)).rejects.toThrow(/permission denied|append-only/);
        await expect(client.query(`TRUNCATE ${table}`)).rejects.toThrow(/permission denied|append-only/);
      }
      // A custom setting is no key: anyone may set one.
      await client.query("SELECT set_config('audit_chain.pending', '', false), set_config('app.purge', 'on', false)");
      await expect(client.query('DELETE FROM audit_events')).rejects.toThrow(/permission denied|append-only/);
      // Nor may a service become the purge role or call its delete directly, except audit-svc.
      await expect(client.query('SET ROLE clinical_audit_purger')).rejects.toThrow(/permission denied/);
      if (role !== 'clinical_audit_svc') {
        await expect(client.query("SELECT audit_purge_prefix(now(), 1, sha256(''), '{}')")).rejects.toThrow(/permission denied/);
      } else {
        // audit-svc may call it, and it refuses anything inside the retention floor.
        await expect(client.query("SELECT audit_purge_prefix(now() - interval '1 year', 1, sha256(''), '{}')")).rejects.toThrow(
          /minimum retention/,
        );
      }
    } finally {
      await client.end();
    }
  });

  it('refuses UPDATE and TRUNCATE even to the owner, and DELETE outside the purge', async () => {
    await sealPendingEvents(service.running.runtime.pool, 100_000, { waitForOtherSealers: true });
    expect((await admin.query('SELECT count(*)::int AS n FROM audit_chain')).rows[0].n).toBeGreaterThan(0);
    await expect(admin.query("UPDATE audit_events SET user_id = 'forged'")).rejects.toThrow(/append-only: UPDATE refused/);
    await expect(admin.query('DELETE FROM audit_events')).rejects.toThrow(/append-only: DELETE refused/);
    await expect(admin.query('TRUNCATE audit_events')).rejects.toThrow(/append-only: TRUNCATE refused/);
    await expect(admin.query('DELETE FROM audit_chain')).rejects.toThrow(/append-only: DELETE refused/);
    await expect(admin.query('TRUNCATE audit_chain')).rejects.toThrow(/append-only: TRUNCATE refused/);
  });
});
