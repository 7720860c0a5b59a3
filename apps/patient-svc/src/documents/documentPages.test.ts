import { documentV1, patientV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientServiceModule } from '../patientServiceModule.js';
import { newPatient } from '../testing/fixtures.js';
import { PAGE_BYTE_BUDGET } from './validateDocument.js';

const { DocumentType } = documentV1;
/** gRPC's default limit on a message a client receives. */
const GRPC_MAX_MESSAGE = 4 * 1_048_576;

let service: TestService;
let admin: pg.Client;
let documents: documentV1.DocumentServiceClient;
let patients: patientV1.PatientServiceClient;

/** Content of about 900 KB as JSON. */
const largeContent = (tag: string) => ({ tag, blob: `${tag}:`.padEnd(900_000, 'x') });

/** Bytes of a page the way the budget counts them (compact JSON never exceeds jsonb's text form). */
const pageBytes = (page: readonly documentV1.Document[]) =>
  page.reduce(
    (sum, document) =>
      sum +
      Buffer.byteLength(JSON.stringify(document.content ?? {})) +
      Buffer.byteLength(JSON.stringify(document.metadata ?? {})) +
      Buffer.byteLength(document.title),
    0,
  );

async function newPatientId(): Promise<string> {
  return (await patients.createPatient({ patient: newPatient(), requestId: '' })).patient!.patientId;
}

beforeAll(async () => {
  service = await startTestService(patientServiceModule);
  admin = new pg.Client({ connectionString: service.database.url });
  await admin.connect();
  const token = await service.token({ sub: 'doc-pager', roles: ['coordinator'], sites: ['SITE-A'] });
  documents = service.client(documentV1.DocumentServiceDefinition, token);
  patients = service.client(patientV1.PatientServiceDefinition, token);
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

describe('document listings of large documents', () => {
  it('stores each row’s JSON size, in documents and in every version', async () => {
    const patientId = await newPatientId();
    const { document } = await documents.createDocument({
      document: documentV1.Document.fromPartial({ patientId, documentType: DocumentType.DOCUMENT_TYPE_CRF, title: 't', content: { a: 'é' }, metadata: { m: 1 } }),
      requestId: '',
    });
    const { rows } = await admin.query(
      `SELECT d.body_bytes AS current, v.body_bytes AS version, octet_length(d.content::text) + octet_length(d.metadata::text) AS expected
         FROM documents AS d JOIN document_versions AS v USING (document_id) WHERE d.document_id = $1`,
      [document!.documentId],
    );
    expect(rows).toEqual([{ current: rows[0].expected, version: rows[0].expected, expected: rows[0].expected }]);
    expect(rows[0].expected).toBeGreaterThan(0);
  });

  it('ListDocuments: pages stay within the byte budget, and walking them returns every document once', async () => {
    const patientId = await newPatientId();
    const created: string[] = [];
    // Large documents with small ones between them, so that the budget cuts pages at varying places.
    for (let index = 0; index < 9; index += 1) {
      const content = index % 3 === 2 ? { tag: `small-${index}` } : largeContent(`large-${index}`);
      const { document } = await documents.createDocument({
        document: documentV1.Document.fromPartial({ patientId, documentType: DocumentType.DOCUMENT_TYPE_IMAGING, title: `doc ${index}`, content, metadata: { index } }),
        requestId: '',
      });
      created.push(document!.documentId);
    }

    for (const pageSize of [0, 2]) {
      const seen: string[] = [];
      const pageLengths: number[] = [];
      let pageToken = '';
      do {
        const page = await documents.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId, pageSize, pageToken }));
        expect(page.documents.length).toBeGreaterThan(0);
        expect(pageBytes(page.documents)).toBeLessThanOrEqual(PAGE_BYTE_BUDGET);
        expect(documentV1.ListDocumentsResponse.encode(page).finish().length).toBeLessThan(GRPC_MAX_MESSAGE);
        seen.push(...page.documents.map((document) => document.documentId));
        pageLengths.push(page.documents.length);
        pageToken = page.nextPageToken;
      } while (pageToken);
      expect(seen).toEqual([...created].reverse());
      if (pageSize === 0) {
        // Six documents of ~900 KB cannot share fewer than two pages of 3 MiB.
        expect(pageLengths.length).toBeGreaterThanOrEqual(2);
      }
    }
  });

  it('ListDocumentVersions: pages stay within the byte budget, and walking them returns every version once', async () => {
    const patientId = await newPatientId();
    const { document } = await documents.createDocument({
      document: documentV1.Document.fromPartial({ patientId, documentType: DocumentType.DOCUMENT_TYPE_CSR, title: 'CSR', content: largeContent('v1'), metadata: {} }),
      requestId: '',
    });
    const documentId = document!.documentId;
    for (let version = 2; version <= 8; version += 1) {
      await documents.createDocumentVersion({
        documentId,
        expectedVersion: version - 1,
        title: `CSR v${version}`,
        content: version === 5 ? { tag: 'small' } : largeContent(`v${version}`),
        metadata: { version },
        reason: 'revision',
        requestId: '',
      });
    }

    const seen: number[] = [];
    let pages = 0;
    let pageToken = '';
    do {
      const page = await documents.listDocumentVersions({ documentId, pageSize: 0, pageToken });
      pages += 1;
      expect(page.documents.length).toBeGreaterThan(0);
      expect(pageBytes(page.documents)).toBeLessThanOrEqual(PAGE_BYTE_BUDGET);
      expect(documentV1.ListDocumentVersionsResponse.encode(page).finish().length).toBeLessThan(GRPC_MAX_MESSAGE);
      seen.push(...page.documents.map((version) => version.version));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual([8, 7, 6, 5, 4, 3, 2, 1]);
    expect(pages).toBeGreaterThanOrEqual(3);
  });

  it('ends a page where the response would pass 4 MiB, though its JSON is far under the budget', async () => {
    // A number in a list is 2 bytes of JSON and 11 as a protobuf Value: each content is about
    // 360 KB of JSON and 1.98 MB on the wire (within the 2 MB encoded limit); three take 5.9 MB.
    const numbers = (tag: string) => ({ tag, values: Array.from({ length: 180_000 }, () => 0) });
    const patientId = await newPatientId();
    const created: documentV1.Document[] = [];
    for (const title of ['n1', 'n2', 'n3']) {
      const { document } = await documents.createDocument({
        document: documentV1.Document.fromPartial({ patientId, documentType: DocumentType.DOCUMENT_TYPE_CRF, title, content: numbers(title) }),
        requestId: '',
      });
      created.push(document!);
    }
    for (const version of [2, 3]) {
      await documents.createDocumentVersion({
        documentId: created[0]!.documentId,
        expectedVersion: version - 1,
        title: `n1 v${version}`,
        content: numbers(`n1 v${version}`),
        metadata: {},
        reason: 'revision',
        requestId: '',
      });
    }

    // Both listings come through the test client's default 4 MiB limit, two per page.
    const pages: string[][] = [];
    let pageToken = '';
    do {
      const page = await documents.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId, pageToken }));
      pages.push(page.documents.map((listed) => listed.title));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(pages).toEqual([['n3', 'n2'], ['n1 v3']]);

    const first = await documents.listDocumentVersions({ documentId: created[0]!.documentId, pageSize: 0, pageToken: '' });
    expect(first.documents.map((version) => version.version)).toEqual([3, 2]);
    const second = await documents.listDocumentVersions({ documentId: created[0]!.documentId, pageSize: 0, pageToken: first.nextPageToken });
    expect(second.documents.map((version) => version.version)).toEqual([1]);
    expect(second.nextPageToken).toBe('');
  });

  it('returns a document larger than the budget alone rather than an empty page', async () => {
    // Only plain SQL can store one this large (the API caps content at 1 MiB).
    const patientId = await newPatientId();
    await admin.query(
      `INSERT INTO documents (patient_id, document_type, title, content)
       SELECT $1, 'other', 'huge ' || g, jsonb_build_object('blob', repeat('y', 3200000)) FROM generate_series(1, 2) AS g`,
      [patientId],
    );
    const first = await documents.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId }));
    expect(first.documents).toHaveLength(1);
    expect(first.nextPageToken).not.toBe('');
    const second = await documents.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId, pageToken: first.nextPageToken }));
    expect(second.documents).toHaveLength(1);
    expect(second.nextPageToken).toBe('');
    expect(second.documents[0]!.documentId).not.toBe(first.documents[0]!.documentId);
  });
});
