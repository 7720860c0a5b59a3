import { auditV1 } from '@clinical/contracts';
import { sql } from '@clinical/db';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { Status } from 'nice-grpc';
import type pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createAuditServiceModule } from '../auditServiceModule.js';
import { connectAs, expectStatus, inAuditedTransaction, insertPatient } from '../testKit.js';
import { sealPendingEvents } from './chainSealer.js';
import { verifyChain } from './verifyChain.js';

const { ChainBreakKind } = auditV1;
const running: TestService[] = [];
const clients: pg.Client[] = [];

/**
 * A service over a fresh database holding `patients` patients written by
 * patient-svc's role, one transaction each, then `bulkPatients` more in one
 * statement; it verifies on `verifyConnections` connections.
 */
async function trailWith(patients: number, options: { bulkPatients?: number; verifyConnections?: number } = {}) {
  const service = await startTestService(
    createAuditServiceModule({ verifyBatchSize: 1_000, verifyConnections: options.verifyConnections ?? 2 }),
  );
  running.push(service);
  // The auditor's session is opened first: its audit event is the trail's first entry, before the patients'.
  const auditorToken = await service.token({ sub: 'auditor-v', roles: ['auditor'], sites: '*' });
  const admin = await connectAs(service);
  clients.push(admin);
  const writer = await connectAs(service, 'clinical_patient_svc');
  for (let i = 0; i < patients; i += 1) {
    await inAuditedTransaction(writer, { userId: 'coordinator-v' }, async () => {
      await insertPatient(writer);
    });
  }
  if (options.bulkPatients) {
    await inAuditedTransaction(writer, { userId: 'coordinator-bulk' }, async () => {
      await writer.query(
        `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date)
         SELECT 'BULK-' || g, 'SITE-A', 'RA001', '2024-01-15' FROM generate_series(1, $1) AS g`,
        [options.bulkPatients],
      );
    });
  }
  await writer.end();
  // Sealed, as the sealer does within its interval: tampering starts from a chained trail.
  await sealPendingEvents(service.running.runtime.pool, 100_000, { waitForOtherSealers: true });
  const auditor = service.client(auditV1.AuditServiceDefinition, auditorToken);
  return { service, admin, auditor };
}

/** As a superuser who goes around the triggers. */
async function behindTheBack(admin: pg.Client, statement: string, params: unknown[] = []) {
  await admin.query('BEGIN');
  await admin.query('ALTER TABLE audit_events DISABLE TRIGGER USER');
  await admin.query('ALTER TABLE audit_chain DISABLE TRIGGER USER');
  await admin.query(statement, params);
  await admin.query('ALTER TABLE audit_events ENABLE TRIGGER USER');
  await admin.query('ALTER TABLE audit_chain ENABLE TRIGGER USER');
  await admin.query('COMMIT');
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.end()));
  await Promise.all(running.splice(0).map((service) => service.stop()));
});

describe('VerifyAuditTrail', () => {
  it('finds the trail intact after concurrent writers and a transaction that commits late', async () => {
    const { service, admin, auditor } = await trailWith(0);
    const late = await connectAs(service, 'clinical_patient_svc');
    // Opens first, writes first, commits last.
    await late.query('BEGIN');
    await late.query("SELECT set_config('app.user_id', 'late-writer', true)");
    const lateEvents = await insertPatient(late);
    const writers = await Promise.all(Array.from({ length: 8 }, () => connectAs(service, 'clinical_patient_svc')));
    await Promise.all(
      writers.map(async (writer) => {
        for (let i = 0; i < 25; i += 1) {
          await inAuditedTransaction(writer, { userId: 'concurrent' }, async () => {
            await insertPatient(writer);
          });
        }
      }),
    );
    // The writers' events are sealed while the late transaction is still open: its event escapes nothing.
    await sealPendingEvents(service.running.runtime.pool, 100_000, { waitForOtherSealers: true });
    await late.query('COMMIT');
    await Promise.all([late, ...writers].map((client) => client.end()));

    const result = await auditor.verifyAuditTrail({});
    expect(result).toMatchObject({ intact: true, checkedCount: '202', firstSequenceNumber: '1', lastSequenceNumber: '202', unchainedCount: '0' });
    expect(result.anchorHash).toBe('0'.repeat(64));
    // The late transaction's event is chained last, after everything sealed before it committed.
    const { rows } = await admin.query(
      `SELECT c.sequence_number FROM audit_events e JOIN audit_chain c USING (event_seq) WHERE e.entity_id = $1`,
      [lateEvents],
    );
    expect(rows[0].sequence_number).toBe('202');
    const range = await auditor.verifyAuditTrail({ startSequenceNumber: '50', endSequenceNumber: '60' });
    expect(range).toMatchObject({ intact: true, checkedCount: '10', firstSequenceNumber: '50', lastSequenceNumber: '59' });
  });

  it('reports an event edited by a superuser', async () => {
    const { admin, auditor } = await trailWith(10);
    await behindTheBack(admin, "UPDATE audit_events SET user_id = 'someone-else' WHERE event_seq = 4");
    const { rows } = await admin.query('SELECT e.event_id, c.sequence_number FROM audit_events e JOIN audit_chain c USING (event_seq) WHERE event_seq = 4');
    const result = await auditor.verifyAuditTrail({});
    expect(result.intact).toBe(false);
    expect(result.firstBreak).toMatchObject({
      kind: ChainBreakKind.CHAIN_BREAK_KIND_EDITED,
      sequenceNumber: rows[0].sequence_number,
      eventId: rows[0].event_id,
    });
    expect(result.firstBreak!.expectedHash).not.toBe(result.firstBreak!.actualHash);
    expect(result.checkedCount).toBe(String(Number(rows[0].sequence_number) - 1));
  });

  it('reports events deleted by a superuser, in the middle and at the end', async () => {
    const { admin, auditor } = await trailWith(10);
    await behindTheBack(admin, 'DELETE FROM audit_events WHERE event_seq = 6');
    const middle = await auditor.verifyAuditTrail({});
    expect(middle.firstBreak).toMatchObject({ kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED, sequenceNumber: '6' });
    // Deleting the chain entry too leaves a gap.
    await behindTheBack(admin, 'DELETE FROM audit_chain WHERE sequence_number = 6');
    const gap = await auditor.verifyAuditTrail({});
    expect(gap.firstBreak).toMatchObject({ kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED, sequenceNumber: '6' });
    // The tail: events and entries 9 and 10 gone, the head remembers 10.
    await behindTheBack(admin, 'DELETE FROM audit_events WHERE event_seq IN (SELECT event_seq FROM audit_chain WHERE sequence_number >= 9)');
    await behindTheBack(admin, 'DELETE FROM audit_chain WHERE sequence_number >= 9');
    const tail = await auditor.verifyAuditTrail({ startSequenceNumber: '8' });
    expect(tail.firstBreak).toMatchObject({ kind: ChainBreakKind.CHAIN_BREAK_KIND_TRUNCATED, sequenceNumber: '9' });
    expect(tail.checkedCount).toBe('1');
  });

  it('reports an event inserted behind the services by a superuser, with or without triggers', async () => {
    const { admin, auditor } = await trailWith(5);
    await admin.query(
      `INSERT INTO audit_events (event_type, entity_type, user_id, action) VALUES ('DATA_ACCESS', 'patient', 'forger', 'READ')`,
    );
    const plain = await auditor.verifyAuditTrail({});
    expect(plain).toMatchObject({ intact: false, unchainedCount: '1' });
    expect(plain.firstBreak?.kind).toBe(ChainBreakKind.CHAIN_BREAK_KIND_INSERTED);
    const { rows } = await admin.query("SELECT event_id FROM audit_events WHERE user_id = 'forger'");
    expect(plain.firstBreak?.eventId).toBe(rows[0].event_id);

    await behindTheBack(admin, `INSERT INTO audit_events (event_type, entity_type, user_id, action) VALUES ('DATA_ACCESS', 'patient', 'forger-2', 'READ')`);
    expect((await auditor.verifyAuditTrail({})).unchainedCount).toBe('2');
  });

  it('reports a chain entry forged or rewritten by a superuser', async () => {
    const { admin, auditor } = await trailWith(6);
    await behindTheBack(admin, "UPDATE audit_chain SET row_hash = sha256('forged') WHERE sequence_number = 3");
    const result = await auditor.verifyAuditTrail({});
    expect(result.firstBreak).toMatchObject({ kind: ChainBreakKind.CHAIN_BREAK_KIND_INSERTED, sequenceNumber: '3' });
  });

  it('checks its arguments and who asks', async () => {
    const { service, auditor } = await trailWith(1);
    const bad = await expectStatus(auditor.verifyAuditTrail({ startSequenceNumber: '5', endSequenceNumber: '5' }), Status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/end_sequence_number/);
    await expectStatus(auditor.verifyAuditTrail({ startSequenceNumber: '-1' }), Status.INVALID_ARGUMENT);
    const siteBound = service.client(
      auditV1.AuditServiceDefinition,
      await service.token({ sub: 'auditor-a', roles: ['auditor'], sites: ['SITE-A'] }),
    );
    await expectStatus(siteBound.verifyAuditTrail({}), Status.PERMISSION_DENIED);
    const coordinator = service.client(
      auditV1.AuditServiceDefinition,
      await service.token({ sub: 'coordinator', roles: ['coordinator'], sites: '*' }),
    );
    await expectStatus(coordinator.verifyAuditTrail({}), Status.PERMISSION_DENIED);
  });

  it('checks slices side by side on one snapshot and reports the earliest break among them', async () => {
    const { admin, auditor } = await trailWith(0, { bulkPatients: 4_500, verifyConnections: 3 });
    // Five slices of 1,000 event_seq values, three connections.
    expect(await auditor.verifyAuditTrail({})).toMatchObject({ intact: true, checkedCount: '4501', lastSequenceNumber: '4501' });
    const eventAt = async (position: number) =>
      (await admin.query('SELECT event_seq FROM audit_chain WHERE sequence_number = $1', [position])).rows[0].event_seq as string;

    // An edit in the fourth slice, then a later one in the fifth: the earlier wins.
    await behindTheBack(admin, "UPDATE audit_events SET user_id = 'late-edit' WHERE event_seq = $1", [await eventAt(4_400)]);
    await behindTheBack(admin, "UPDATE audit_events SET user_id = 'edit' WHERE event_seq = $1", [await eventAt(3_500)]);
    const edited = await auditor.verifyAuditTrail({});
    expect(edited.firstBreak).toMatchObject({ kind: ChainBreakKind.CHAIN_BREAK_KIND_EDITED, sequenceNumber: '3500' });
    expect(edited.checkedCount).toBe('3499');

    // The last entry of the first slice, with its event, gone: the gap is reported where it is,
    // and the link the next slice's first entry cannot make is not reported on its own.
    const lastOfFirst = await eventAt(1_000);
    await behindTheBack(admin, 'DELETE FROM audit_events WHERE event_seq = $1', [lastOfFirst]);
    await behindTheBack(admin, 'DELETE FROM audit_chain WHERE sequence_number = 1000');
    const gap = await auditor.verifyAuditTrail({});
    expect(gap.firstBreak).toMatchObject({ kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED, sequenceNumber: '1000' });
    expect(gap.checkedCount).toBe('999');
    // A range that starts after the gap still sees it: its first entry has no entry before it.
    const after = await auditor.verifyAuditTrail({ startSequenceNumber: '1001' });
    expect(after.firstBreak).toMatchObject({ kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED, sequenceNumber: '1000' });
  });

  it('gives the same answer on one connection as on several', async () => {
    const one = await trailWith(0, { bulkPatients: 2_500, verifyConnections: 1 });
    expect(await one.auditor.verifyAuditTrail({})).toMatchObject({ intact: true, checkedCount: '2501' });
    await behindTheBack(one.admin, 'DELETE FROM audit_chain WHERE sequence_number = 2001');
    expect((await one.auditor.verifyAuditTrail({})).firstBreak).toMatchObject({
      kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED,
      sequenceNumber: '2001',
    });
  });
});

describe('VerifyAuditTrail on a large trail, read in slices by several readers', () => {
  /**
   * A trail of about 9,000 events read in slices of 1,000 event_seq values
   * by three connections: the auditor's session, then five patients whose
   * transaction opened first and committed last (chained after everything
   * else: positions out of event_seq order, across slices), between them
   * 9,000 patients in one statement.
   */
  async function largeTrail() {
    const service = await startTestService(createAuditServiceModule({ verifyBatchSize: 1_000, verifyConnections: 3 }));
    running.push(service);
    const auditorToken = await service.token({ sub: 'auditor-large', roles: ['auditor'], sites: '*' });
    const admin = await connectAs(service);
    clients.push(admin);
    const late = await connectAs(service, 'clinical_patient_svc');
    const bulk = await connectAs(service, 'clinical_patient_svc');
    await late.query('BEGIN');
    await late.query("SELECT set_config('app.user_id', 'late-writer', true)");
    for (let i = 0; i < 5; i += 1) {
      await insertPatient(late);
    }
    await inAuditedTransaction(bulk, { userId: 'coordinator-bulk' }, async () => {
      await bulk.query(
        `INSERT INTO patients (subject_number, site_id, protocol_id, enrollment_date)
         SELECT 'LARGE-' || g, 'SITE-A', 'RA001', '2024-01-15' FROM generate_series(1, 9000) AS g`,
      );
    });
    await sealPendingEvents(service.running.runtime.pool, 100_000, { waitForOtherSealers: true });
    await late.query('COMMIT');
    await Promise.all([late.end(), bulk.end()]);
    await sealPendingEvents(service.running.runtime.pool, 100_000, { waitForOtherSealers: true });
    const auditor = service.client(auditV1.AuditServiceDefinition, auditorToken);
    const entryAt = async (position: number) =>
      (
        await admin.query<{ event_seq: string; event_id: string }>(
          'SELECT c.event_seq, e.event_id FROM audit_chain c LEFT JOIN audit_events e USING (event_seq) WHERE c.sequence_number = $1',
          [position],
        )
      ).rows[0]!;
    const positionOfSeq = async (eventSeq: number) =>
      Number((await admin.query('SELECT sequence_number FROM audit_chain WHERE event_seq = $1', [eventSeq])).rows[0].sequence_number);
    return { service, admin, auditor, entryAt, positionOfSeq };
  }

  it('finds it intact, chained out of event_seq order across slices, whole and in ranges', async () => {
    const { auditor, admin } = await largeTrail();
    const { rows } = await admin.query<{ first: string; last: string }>(
      `SELECT min(c.sequence_number) AS first, max(c.sequence_number) AS last
         FROM audit_chain c JOIN audit_events e USING (event_seq) WHERE e.user_id = 'late-writer'`,
    );
    // The late transaction's events were written second and chained last.
    expect(rows[0]).toEqual({ first: '9002', last: '9006' });
    expect(await auditor.verifyAuditTrail({})).toMatchObject({ intact: true, checkedCount: '9006', lastSequenceNumber: '9006', unchainedCount: '0' });
    expect(await auditor.verifyAuditTrail({ startSequenceNumber: '2500', endSequenceNumber: '7000' })).toMatchObject({
      intact: true,
      checkedCount: '4500',
      firstSequenceNumber: '2500',
      lastSequenceNumber: '6999',
    });
    expect(await auditor.verifyAuditTrail({ startSequenceNumber: '9000' })).toMatchObject({ intact: true, checkedCount: '7' });
  });

  it("finds one event's content edited, one link rewritten and one row deleted in its middle, the earliest first", async () => {
    const { admin, auditor, entryAt, positionOfSeq } = await largeTrail();

    // One event's content, in the sixth slice.
    const edited = await entryAt(5_500);
    await behindTheBack(admin, "UPDATE audit_events SET payload = '{\"tampered\": true}' WHERE event_seq = $1", [edited.event_seq]);
    const afterEdit = await auditor.verifyAuditTrail({});
    expect(afterEdit.firstBreak).toMatchObject({ kind: ChainBreakKind.CHAIN_BREAK_KIND_EDITED, sequenceNumber: '5500', eventId: edited.event_id });
    expect(afterEdit.checkedCount).toBe('5499');

    // One link, where two slices meet: the entry hashes right, but links to a forged predecessor.
    const linked = await positionOfSeq(4_001);
    expect((await entryAt(linked - 1)).event_seq).toBe('4000');
    await behindTheBack(
      admin,
      `UPDATE audit_chain SET previous_hash = sha256('forged'), row_hash = sha256(sha256('forged') || content_hash)
        WHERE sequence_number = $1`,
      [linked],
    );
    const afterLink = await auditor.verifyAuditTrail({});
    expect(afterLink.firstBreak).toMatchObject({ kind: ChainBreakKind.CHAIN_BREAK_KIND_INSERTED, sequenceNumber: String(linked) });
    expect(afterLink.checkedCount).toBe(String(linked - 1));

    // One link within a slice, the same way.
    await behindTheBack(
      admin,
      `UPDATE audit_chain SET previous_hash = sha256('forged'), row_hash = sha256(sha256('forged') || content_hash)
        WHERE sequence_number = 3333`,
    );
    expect((await auditor.verifyAuditTrail({})).firstBreak).toMatchObject({ kind: ChainBreakKind.CHAIN_BREAK_KIND_INSERTED, sequenceNumber: '3333' });

    // One row deleted by the owner (around the triggers that refuse it), event and entry: a gap.
    const deleted = await entryAt(2_222);
    await behindTheBack(admin, 'DELETE FROM audit_events WHERE event_seq = $1', [deleted.event_seq]);
    await behindTheBack(admin, 'DELETE FROM audit_chain WHERE sequence_number = 2222');
    const afterDelete = await auditor.verifyAuditTrail({});
    expect(afterDelete.firstBreak).toMatchObject({ kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED, sequenceNumber: '2222' });
    expect(afterDelete.checkedCount).toBe('2221');

    // An event of the late transaction (chained at the end, read in the first slice) deleted, its entry kept.
    await behindTheBack(admin, "DELETE FROM audit_events WHERE event_seq = (SELECT event_seq FROM audit_chain WHERE sequence_number = 9003)");
    expect((await auditor.verifyAuditTrail({ startSequenceNumber: '9000' })).firstBreak).toMatchObject({
      kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED,
      sequenceNumber: '9003',
    });
  });

  it('checks the links in position order when it would hold too many runs, with the same findings', async () => {
    const { service, admin } = await largeTrail();
    const verifyHoldingAtMost = (maxOpenRuns: number) =>
      service.running.runtime.pool.transaction(async (transaction) => {
        await transaction.query(sql.unsafe`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`);
        return verifyChain(transaction, { batchSize: 500, databaseUrl: service.config.databaseUrl, connections: 2, maxOpenRuns });
      });
    expect(await verifyHoldingAtMost(1)).toMatchObject({ intact: true, checkedCount: '9006' });
    await behindTheBack(
      admin,
      `UPDATE audit_chain SET previous_hash = sha256('forged'), row_hash = sha256(sha256('forged') || content_hash)
        WHERE sequence_number = 7777`,
    );
    await behindTheBack(admin, 'DELETE FROM audit_chain WHERE sequence_number = 8888');
    for (const maxOpenRuns of [1, 50_000]) {
      expect((await verifyHoldingAtMost(maxOpenRuns)).firstBreak).toMatchObject({ kind: ChainBreakKind.CHAIN_BREAK_KIND_INSERTED, sequenceNumber: '7777' });
    }
    await behindTheBack(admin, 'DELETE FROM audit_chain WHERE sequence_number = 1234');
    for (const maxOpenRuns of [1, 50_000]) {
      expect(await verifyHoldingAtMost(maxOpenRuns)).toMatchObject({
        checkedCount: '1233',
        firstBreak: { kind: ChainBreakKind.CHAIN_BREAK_KIND_DELETED, sequenceNumber: '1234' },
      });
    }
  });
});
