import { randomUUID } from 'node:crypto';
import { documentV1, patientV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientServiceModule } from '../patientServiceModule.js';
import { expectStatus, newPatient } from '../testing/fixtures.js';

const { DocumentType } = documentV1;

let service: TestService;
let admin: pg.Client;
let documents: documentV1.DocumentServiceClient;
let patientId: string;

function newDocument(overrides: Partial<documentV1.Document> = {}): documentV1.Document {
  return documentV1.Document.fromPartial({
    patientId,
    documentType: DocumentType.DOCUMENT_TYPE_CONSENT,
    title: 'Informed consent form v2.1',
    content: { signed: true, sections: [{ id: 1, text: 'Purpose of the study' }], language: 'en' },
    metadata: { site: 'SITE-A', form: 'ICF', irb: { approved: true } },
    ...overrides,
  });
}

beforeAll(async () => {
  service = await startTestService(patientServiceModule);
  admin = new pg.Client({ connectionString: service.database.url });
  await admin.connect();
  const token = await service.token({ sub: 'doc-writer', roles: ['coordinator'], sites: ['SITE-A'] });
  documents = service.client(documentV1.DocumentServiceDefinition, token);
  const patients = service.client(patientV1.PatientServiceDefinition, token);
  patientId = (await patients.createPatient({ patient: newPatient(), requestId: '' })).patient!.patientId;
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

describe('documents', () => {
  it('creates version 1 and reads it back', async () => {
    const { document } = await documents.createDocument({ document: newDocument(), requestId: '' });
    expect(document).toMatchObject({ version: 1, patientId, createdBy: 'doc-writer', content: newDocument().content });
    const { document: read } = await documents.getDocument({ documentId: document!.documentId, version: 0 });
    expect(read).toEqual(document);
  });

  it('adds versions without touching old ones; the current one is the highest', async () => {
    const { document } = await documents.createDocument({ document: newDocument(), requestId: '' });
    const v2 = await documents.createDocumentVersion({
      documentId: document!.documentId,
      expectedVersion: 1,
      title: 'Informed consent form v2.2',
      content: { signed: true, language: 'fr' },
      metadata: { form: 'ICF' },
      reason: 'translation',
      requestId: '',
    });
    expect(v2.document).toMatchObject({ version: 2, content: { signed: true, language: 'fr' } });
    expect((await documents.getDocument({ documentId: document!.documentId, version: 0 })).document?.version).toBe(2);
    expect((await documents.getDocument({ documentId: document!.documentId, version: 1 })).document).toMatchObject({
      version: 1,
      title: 'Informed consent form v2.1',
      content: newDocument().content,
    });
    const { documents: versions } = await documents.listDocumentVersions({ documentId: document!.documentId, pageSize: 0, pageToken: '' });
    expect(versions.map((version) => version.version)).toEqual([2, 1]);
    const { rows } = await admin.query('SELECT reason FROM document_versions WHERE document_id = $1 AND version = 2', [document!.documentId]);
    expect(rows[0].reason).toBe('translation');
  });

  it('refuses a version built on a stale one with ABORTED; of two racing writers one wins', async () => {
    const { document } = await documents.createDocument({ document: newDocument(), requestId: '' });
    const attempt = (title: string) =>
      documents.createDocumentVersion({ documentId: document!.documentId, expectedVersion: 1, title, content: {}, metadata: {}, reason: '', requestId: '' });
    const results = await Promise.allSettled([attempt('a'), attempt('b'), attempt('c')]);
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    await expectStatus(attempt('late'), Status.ABORTED);
    const { rows } = await admin.query('SELECT max(version) AS v, count(*)::int AS n FROM document_versions WHERE document_id = $1', [document!.documentId]);
    expect(rows[0]).toEqual({ v: 2, n: 2 });
  });

  it('filters by type and by JSON containment of content and metadata', async () => {
    const listPatient = (await service
      .client(patientV1.PatientServiceDefinition, await service.token({ sub: 'x', roles: ['coordinator'], sites: ['SITE-A'] }))
      .createPatient({ patient: newPatient(), requestId: '' })).patient!.patientId;
    const make = (type: documentV1.DocumentType, content: object, metadata: object) =>
      documents.createDocument({ document: newDocument({ patientId: listPatient, documentType: type, content, metadata }), requestId: '' });
    await make(DocumentType.DOCUMENT_TYPE_LAB_REPORT, { panel: 'CBC', abnormal: true }, { lab: 'central' });
    await make(DocumentType.DOCUMENT_TYPE_LAB_REPORT, { panel: 'CMP', abnormal: false }, { lab: 'local' });
    await make(DocumentType.DOCUMENT_TYPE_CRF, { visit: 3, abnormal: true }, { lab: 'central' });
    const list = async (request: Partial<documentV1.ListDocumentsRequest>) =>
      (await documents.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId: listPatient, ...request }))).documents;
    expect(await list({})).toHaveLength(3);
    expect(await list({ documentType: DocumentType.DOCUMENT_TYPE_LAB_REPORT })).toHaveLength(2);
    expect((await list({ contentFilter: { abnormal: true } })).map((document) => document.content?.panel ?? 'crf').sort()).toEqual(['CBC', 'crf']);
    expect(await list({ contentFilter: { abnormal: true }, metadataFilter: { lab: 'central' }, documentType: DocumentType.DOCUMENT_TYPE_LAB_REPORT })).toHaveLength(1);
    expect(await list({ metadataFilter: { lab: 'nowhere' } })).toHaveLength(0);

    await admin.query('BEGIN');
    await admin.query('SET LOCAL enable_seqscan = off');
    const plan = await admin.query(`EXPLAIN SELECT document_id FROM documents WHERE content @> '{"abnormal": true}'`);
    await admin.query('ROLLBACK');
    expect(plan.rows.map((row) => row['QUERY PLAN']).join('\n')).toContain('documents_content_gin');
  });

  it('pages a long list without repeats', async () => {
    const pagePatient = (await service
      .client(patientV1.PatientServiceDefinition, await service.token({ sub: 'x', roles: ['coordinator'], sites: ['SITE-A'] }))
      .createPatient({ patient: newPatient(), requestId: '' })).patient!.patientId;
    for (let index = 0; index < 12; index += 1) {
      await documents.createDocument({ document: newDocument({ patientId: pagePatient, title: `doc ${index}` }), requestId: '' });
    }
    const seen: string[] = [];
    let pageToken = '';
    do {
      const page = await documents.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId: pagePatient, pageSize: 5, pageToken }));
      seen.push(...page.documents.map((document) => document.documentId));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toHaveLength(12);
    expect(new Set(seen).size).toBe(12);
  });

  it('refuses content over 1 MiB with a clear error and writes nothing', async () => {
    const before = await admin.query('SELECT count(*)::int AS n FROM documents');
    const error = await expectStatus(
      documents.createDocument({ document: newDocument({ content: { blob: 'x'.repeat(1_100_000) } }), requestId: '' }),
      Status.INVALID_ARGUMENT,
    );
    expect(error.details).toContain('document.content: must be at most 1048576 bytes as JSON');
    const after = await admin.query('SELECT count(*)::int AS n FROM documents');
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it('hides another site’s documents and patients exactly like missing ones', async () => {
    const { document } = await documents.createDocument({ document: newDocument(), requestId: '' });
    const other = service.client(documentV1.DocumentServiceDefinition, await service.token({ sub: 'b', roles: ['coordinator'], sites: ['SITE-B'] }));
    await expectStatus(other.getDocument({ documentId: document!.documentId, version: 0 }), Status.NOT_FOUND);
    await expectStatus(other.getDocument({ documentId: randomUUID(), version: 0 }), Status.NOT_FOUND);
    await expectStatus(other.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId })), Status.NOT_FOUND);
    await expectStatus(other.createDocument({ document: newDocument(), requestId: '' }), Status.NOT_FOUND);
    await expectStatus(
      other.createDocumentVersion({ documentId: document!.documentId, expectedVersion: 1, title: 't', content: {}, metadata: {}, reason: '', requestId: '' }),
      Status.NOT_FOUND,
    );
  });

  it('records an access event for each document read', async () => {
    const reader = service.client(documentV1.DocumentServiceDefinition, await service.token({ sub: 'doc-reader', roles: ['monitor'], sites: ['SITE-A'] }));
    const { document } = await documents.createDocument({ document: newDocument(), requestId: '' });
    await reader.getDocument({ documentId: document!.documentId, version: 0 });
    const listed = await reader.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId }));
    await service.running.runtime.accessRecorder.flush();
    const { rows } = await admin.query(
      `SELECT entity_type, entity_id, patient_id, payload->>'method' AS method FROM audit_events
        WHERE event_type = 'DATA_ACCESS' AND user_id = 'doc-reader'`,
    );
    expect(rows.filter((row) => row.method.endsWith('/GetDocument'))).toEqual([
      { entity_type: 'document', entity_id: document!.documentId, patient_id: patientId, method: '/clinical.patient.v1.DocumentService/GetDocument' },
    ]);
    expect(rows.filter((row) => row.method.endsWith('/ListDocuments'))).toHaveLength(listed.documents.length);
  });
});
