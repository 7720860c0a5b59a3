import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { eventually } from '@clinical/testing';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuditServiceModule } from '../auditServiceModule.js';
import { sealPendingEvents } from './chainSealer.js';
import { connectAs, inAuditedTransaction, insertPatient } from '../testKit.js';

let service: TestService;
let admin: pg.Client;

async function pendingCount(): Promise<number> {
  const { rows } = await admin.query('SELECT count(*)::int AS n FROM audit_chain_pending');
  return rows[0].n as number;
}

beforeAll(async () => {
  service = await startTestService(createAuditServiceModule({ sealIntervalMs: 50 }));
  admin = await connectAs(service);
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

describe('the chain sealer', () => {
  it('queues each committed event for sealing, and seals it in the background within its interval', async () => {
    const writer = await connectAs(service, 'clinical_patient_svc');
    try {
      await inAuditedTransaction(writer, { userId: 'sealer-test' }, async () => {
        for (let index = 0; index < 20; index += 1) {
          await insertPatient(writer);
        }
      });
    } finally {
      await writer.end();
    }
    await eventually(async () => ((await pendingCount()) === 0 ? true : undefined), 30_000, 'the background sealer');
    const { rows } = await admin.query(
      `SELECT count(*)::int AS n FROM audit_events e WHERE user_id = 'sealer-test'
          AND EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_seq = e.event_seq)`,
    );
    expect(rows[0].n).toBe(20);
  });

  it('never queues what a transaction rolled back, and leaves no gap', async () => {
    const writer = await connectAs(service, 'clinical_patient_svc');
    try {
      await writer.query('BEGIN');
      await insertPatient(writer);
      await writer.query('ROLLBACK');
    } finally {
      await writer.end();
    }
    expect(await pendingCount()).toBe(0);
    const { rows } = await admin.query(
      'SELECT max(sequence_number) - min(sequence_number) + 1 = count(*) AS gap_free FROM audit_chain',
    );
    expect(rows[0].gap_free).toBe(true);
  });

  it('leaves an event written outside the services out of the queue', async () => {
    await admin.query(
      `INSERT INTO audit_events (event_type, entity_type, user_id, action) VALUES ('DATA_ACCESS', 'patient', 'intruder', 'READ')`,
    );
    const { rows } = await admin.query(
      `SELECT count(*)::int AS n FROM audit_chain_pending p JOIN audit_events e USING (event_seq) WHERE e.user_id = 'intruder'`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('waits, when asked, for another sealer at work and then seals every committed event', async () => {
    const writer = await connectAs(service, 'clinical_patient_svc');
    const otherSealer = await connectAs(service, 'clinical_audit_svc');
    try {
      // Another replica's tick holds the sealing lock...
      await otherSealer.query('BEGIN');
      await otherSealer.query("SELECT pg_advisory_xact_lock(hashtext('audit_chain_seal'))");
      await inAuditedTransaction(writer, { userId: 'waiting-sealer' }, async () => {
        for (let index = 0; index < 5; index += 1) {
          await insertPatient(writer);
        }
      });
      const pool = service.running.runtime.pool;
      // ...so a sealer that does not wait gives up at once, with the events still queued,
      expect(await sealPendingEvents(pool, 100)).toBe(0);
      expect(await pendingCount()).toBe(5);
      // and one that waits finishes only once the lock is free, with nothing left queued.
      const waiting = sealPendingEvents(pool, 100, { waitForOtherSealers: true });
      await eventually(async () => {
        const { rows: waiters } = await admin.query(`SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
            WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()`);
        return waiters.length > 0 ? true : undefined;
      }, 30_000, 'the waiting sealer to queue for the lock');
      await otherSealer.query('COMMIT');
      await waiting;
      expect(await pendingCount()).toBe(0);
      const { rows } = await admin.query(
        `SELECT count(*)::int AS n FROM audit_events e WHERE user_id = 'waiting-sealer'
            AND EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_seq = e.event_seq)`,
      );
      expect(rows[0].n).toBe(5);
    } finally {
      await otherSealer.query('ROLLBACK').catch(() => undefined);
      await Promise.all([writer.end(), otherSealer.end()]);
    }
  });
});
