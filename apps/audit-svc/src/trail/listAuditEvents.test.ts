import { auditV1 } from '@clinical/contracts';
import { expectStatus, startTestService, type TestService } from '@clinical/server-kit/testing';
import { Status, type Client } from 'nice-grpc';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditServiceModule } from '../auditServiceModule.js';
import { connectAs, insertPatient } from '../testKit.js';
import { PAGE_PAYLOAD_BUDGET_BYTES } from './auditEventQueries.js';

let service: TestService;
let admin: pg.Client;
let auditor: Client<typeof auditV1.AuditServiceDefinition>;

beforeAll(async () => {
  service = await startTestService(auditServiceModule);
  admin = await connectAs(service);
  auditor = service.client(auditV1.AuditServiceDefinition, await service.token({ sub: 'auditor-p', roles: ['auditor'], sites: '*' }));
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

/**
 * Every event about documents of one patient, page by page (the walk's own
 * reads are recorded as events about the patient too: left out).
 */
async function walk(patientId: string, pageSize: number): Promise<auditV1.AuditEvent[][]> {
  const pages: auditV1.AuditEvent[][] = [];
  let pageToken = '';
  do {
    const page = await auditor.listAuditEvents({ patientId, entityType: 'documents', pageSize, pageToken });
    pages.push(page.events);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return pages;
}

describe('ListAuditEvents pages by payload bytes', () => {
  it('keeps each page under the payload budget, and walking the pages returns every event once', async () => {
    const patientId = await insertPatient(admin, 'SITE-A');
    // As audit-svc's role writes events (chained like the triggers' events):
    // document updates carrying about 1.1 MiB of old and new content each,
    // between small events, one second apart, newest last.
    const auditSvc = await connectAs(service, 'clinical_audit_svc');
    try {
      await auditSvc.query(
        `INSERT INTO audit_events (event_type, entity_type, entity_id, entity_key, patient_id, user_id, action, payload, "timestamp")
         SELECT 'DATA_CHANGE', 'document', gen_random_uuid(), NULL, $1::uuid, 'coordinator-p', 'UPDATE',
                CASE WHEN g % 3 = 0
                     THEN jsonb_build_object('old', jsonb_build_object('content', repeat('o', 576 * 1024)),
                                             'new', jsonb_build_object('content', repeat('n', 576 * 1024)))
                     ELSE jsonb_build_object('old', jsonb_build_object('title', 'v' || g), 'new', jsonb_build_object('title', 'w' || g))
                END,
                now() - interval '1 hour' + g * interval '1 second'
           FROM generate_series(1, 45) AS g`,
        [patientId],
      );
    } finally {
      await auditSvc.end();
    }
    const { rows } = await admin.query<{ event_id: string; payload_bytes: number }>(
      `SELECT event_id, payload_bytes FROM audit_events WHERE patient_id = $1 AND entity_type = 'document'
        ORDER BY "timestamp" DESC, event_id DESC`,
      [patientId],
    );
    expect(rows).toHaveLength(45);
    const bytesOf = new Map(rows.map((row) => [row.event_id, row.payload_bytes]));
    expect(rows.filter((row) => row.payload_bytes > 1024 * 1024)).toHaveLength(15);

    for (const pageSize of [0, 1_000, 7]) {
      const pages = await walk(patientId, pageSize);
      const listed = pages.flat().map((event) => event.eventId);
      // Every event once, in the keyset order.
      expect(listed).toEqual(rows.map((row) => row.event_id));
      for (const page of pages) {
        expect(page.length).toBeGreaterThan(0);
        expect(page.length).toBeLessThanOrEqual(pageSize || 100);
        // Within the budget, unless the page is a single event.
        const bytes = page.reduce((sum, event) => sum + bytesOf.get(event.eventId)!, 0);
        expect(page.length === 1 || bytes <= PAGE_PAYLOAD_BUDGET_BYTES).toBe(true);
        expect(page.filter((event) => bytesOf.get(event.eventId)! > 1024 * 1024).length).toBeLessThanOrEqual(2);
      }
      if (pageSize !== 7) {
        // The budget, not the page size, ended the pages.
        expect(pages.length).toBeGreaterThanOrEqual(8);
      }
    }
  });

  it('ends a page before the event that would exceed the budget, but never returns an empty page', async () => {
    const patientId = await insertPatient(admin, 'SITE-A');
    // Newest first: 2.5 MiB, 3.5 MiB (alone beyond the budget), then two small events.
    const { rows } = await admin.query<{ event_id: string }>(
      `INSERT INTO audit_events (event_type, entity_type, patient_id, user_id, action, payload, "timestamp")
       SELECT 'DATA_CHANGE', 'document', $1::uuid, 'coordinator-p', 'UPDATE',
              jsonb_build_object('new', jsonb_build_object('content', repeat('x', size))),
              now() - interval '2 hours' - position * interval '1 second'
         FROM unnest(ARRAY[2560 * 1024, 3584 * 1024, 10, 10]) WITH ORDINALITY AS s(size, position)
       RETURNING event_id`,
      [patientId],
    );
    const pages = await walk(patientId, 0);
    const [large, larger, small1, small2] = rows.map((row) => row.event_id);
    expect(pages.map((page) => page.map((event) => event.eventId))).toEqual([[large], [larger], [small1, small2]]);
  });
});

describe('ListAuditEvents pages by response size', () => {
  it('ends a page where the response would pass 4 MiB, though the payloads are under the budget', async () => {
    const patientId = await insertPatient(admin, 'SITE-A');
    // Three events of 250,000 numbers each: about 750 KB of jsonb text, but 11 bytes a number as
    // protobuf (2.6 MiB an event): the payload budget would put all three on one page.
    await admin.query(
      `INSERT INTO audit_events (event_type, entity_type, patient_id, user_id, action, payload, "timestamp")
       SELECT 'DATA_CHANGE', 'document', $1::uuid, 'coordinator-p', 'UPDATE',
              jsonb_build_object('new', (SELECT jsonb_agg(0) FROM generate_series(1, 250000))),
              now() - interval '3 hours' - g * interval '1 second'
         FROM generate_series(1, 3) AS g`,
      [patientId],
    );
    // The test client refuses messages over 4 MiB, as any default client does.
    const pages = await walk(patientId, 0);
    expect(pages.map((page) => page.length)).toEqual([1, 1, 1]);
  });
});

describe('events about documents at their size limit', () => {
  it('are readable by a default client, even a new version\'s event holding the old and the new body', async () => {
    const patientId = await insertPatient(admin, 'SITE-A');
    // 180,000 numbers: about 1.98 MB encoded, within patient-svc's limit for a version's body.
    const body = "jsonb_build_object('values', (SELECT jsonb_agg(0) FROM generate_series(1, 180000)))";
    const { rows } = await admin.query<{ document_id: string }>(
      `INSERT INTO documents (patient_id, document_type, title, content) VALUES ($1, 'crf', 'limit', ${body}) RETURNING document_id`,
      [patientId],
    );
    await admin.query(`UPDATE documents SET content = ${body} || '{"v": 2}', version = 2 WHERE document_id = $1`, [rows[0]!.document_id]);
    const events = (await walk(patientId, 0)).flat();
    expect(events.map((event) => event.action).sort()).toEqual([auditV1.AuditAction.AUDIT_ACTION_INSERT, auditV1.AuditAction.AUDIT_ACTION_UPDATE].sort());
  });
});

describe('ListAuditEvents checks its time range', () => {
  it('refuses instants PostgreSQL cannot take, naming the field', async () => {
    const yearZero = new Date(Date.parse('0001-01-01T00:00:00Z') - 1);
    const year10000 = new Date(Date.UTC(10_000, 0, 1));
    for (const [request, field] of [
      [{ startTime: yearZero }, 'start_time'],
      [{ endTime: year10000 }, 'end_time'],
    ] as const) {
      const refusal = await expectStatus(auditor.listAuditEvents(request), Status.INVALID_ARGUMENT);
      expect(refusal.details).toMatch(new RegExp(`^${field}: must be between 0001`));
    }
  });
});
