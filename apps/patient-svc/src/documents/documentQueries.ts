import { sql, type CommonQueryMethods } from '@clinical/db';
import { z } from 'zod';
import { documentRow, type DocumentRow } from './documentRecord.js';

const CURRENT_COLUMNS = sql.fragment`
  d.document_id, d.patient_id, p.site_id, d.document_type, d.title, d.content, d.metadata, d.version,
  d.updated_at AS created_at, d.created_at::text AS created_at_key,
  coalesce(v.created_by, d.created_by) AS created_by
`;

/** A patient's site, or null when the patient does not exist. */
export async function selectPatientSite(db: CommonQueryMethods, patientId: string): Promise<string | null> {
  return db.maybeOneFirst(sql.type(z.object({ site_id: z.string() }))`
    SELECT site_id FROM patients WHERE patient_id = ${patientId}
  `);
}

export async function insertDocument(
  db: CommonQueryMethods,
  document: { patientId: string; documentType: string; title: string; content: object; metadata: object },
): Promise<DocumentRow> {
  return db.one(sql.type(documentRow)`
    WITH inserted AS (
      INSERT INTO documents (patient_id, document_type, title, content, metadata)
      VALUES (${document.patientId}, ${document.documentType}, ${document.title},
              ${sql.jsonb(document.content as never)}, ${sql.jsonb(document.metadata as never)})
      RETURNING *
    )
    SELECT d.document_id, d.patient_id, p.site_id, d.document_type, d.title, d.content, d.metadata, d.version,
           d.created_at, d.created_at::text AS created_at_key, d.created_by
      FROM inserted AS d JOIN patients AS p USING (patient_id)
  `);
}

/** The current version of a document, or null. */
export async function selectCurrentDocument(db: CommonQueryMethods, documentId: string): Promise<DocumentRow | null> {
  return db.maybeOne(sql.type(documentRow)`
    SELECT ${CURRENT_COLUMNS}
      FROM documents AS d
      JOIN patients AS p USING (patient_id)
      LEFT JOIN document_versions AS v ON v.document_id = d.document_id AND v.version = d.version
     WHERE d.document_id = ${documentId}
  `);
}

/** One version of a document from its immutable history, or null. */
export async function selectDocumentVersion(
  db: CommonQueryMethods,
  documentId: string,
  version: number,
): Promise<DocumentRow | null> {
  return db.maybeOne(sql.type(documentRow)`
    SELECT v.document_id, d.patient_id, p.site_id, d.document_type, v.title, v.content, v.metadata, v.version,
           v.created_at, v.created_at::text AS created_at_key, v.created_by
      FROM document_versions AS v
      JOIN documents AS d USING (document_id)
      JOIN patients AS p USING (patient_id)
     WHERE v.document_id = ${documentId} AND v.version = ${version}
  `);
}

/** How a listing's page is cut: at most `pageSize` rows and `byteBudget` bytes of JSON. */
export interface PageLimits {
  readonly pageSize: number;
  /**
   * Rows are kept while the running sum of their JSON (content, metadata and
   * title) stays within this; the first row is always kept.
   */
  readonly byteBudget: number;
}

/** A page of rows, and whether any row follows the last one. */
export interface DocumentPage {
  readonly rows: readonly DocumentRow[];
  readonly more: boolean;
}

export interface DocumentListQuery extends PageLimits {
  readonly patientId: string;
  readonly documentType?: string;
  readonly contentContains?: object;
  readonly metadataContains?: object;
  /** Start after this (created_at, document_id), newest first. */
  readonly after?: { createdAtKey: string; documentId: string };
}

/** A page row: the document, and how many candidate rows (at most pageSize + 1) the page was cut from. */
const pagedDocumentRow = documentRow.extend({ candidates: z.number().int() });

/**
 * Cuts a page from `sized` (candidates with position, running byte sum and
 * count): rows while within the size and byte limits, always the first.
 * The running sum never decreases, so the kept rows are a prefix of the
 * candidates, and a next page exists exactly when candidates were left over.
 */
function pageCut(limits: PageLimits) {
  return sql.fragment`s.position <= ${limits.pageSize} AND (s.position = 1 OR s.bytes_through <= ${limits.byteBudget})`;
}

function toPage(rows: readonly z.infer<typeof pagedDocumentRow>[]): DocumentPage {
  return {
    rows: rows.map(({ candidates: _candidates, ...row }) => row),
    more: rows.length > 0 && (rows[0]?.candidates ?? 0) > rows.length,
  };
}

/**
 * Current versions of a patient's documents, newest first; JSON containment
 * uses the GIN indexes. The page is chosen in SQL from the stored sizes
 * (body_bytes), so only the rows returned are ever fetched whole.
 */
export async function listDocuments(db: CommonQueryMethods, query: DocumentListQuery): Promise<DocumentPage> {
  const conditions = [
    sql.fragment`d.patient_id = ${query.patientId}`,
    ...(query.documentType ? [sql.fragment`d.document_type = ${query.documentType}`] : []),
    ...(query.contentContains ? [sql.fragment`d.content @> ${sql.jsonb(query.contentContains as never)}`] : []),
    ...(query.metadataContains ? [sql.fragment`d.metadata @> ${sql.jsonb(query.metadataContains as never)}`] : []),
    ...(query.after
      ? [sql.fragment`(d.created_at, d.document_id) < (${query.after.createdAtKey}::timestamptz, ${query.after.documentId}::uuid)`]
      : []),
  ];
  const rows = await db.any(sql.type(pagedDocumentRow)`
    WITH candidates AS (
      SELECT d.document_id, d.created_at, d.body_bytes + octet_length(d.title) AS bytes
        FROM documents AS d
       WHERE ${sql.join(conditions, sql.fragment` AND `)}
       ORDER BY d.created_at DESC, d.document_id DESC
       LIMIT ${query.pageSize + 1}
    ), sized AS (
      SELECT c.document_id,
             row_number() OVER running AS position,
             sum(c.bytes) OVER running AS bytes_through,
             count(*) OVER () AS candidates
        FROM candidates AS c
      WINDOW running AS (ORDER BY c.created_at DESC, c.document_id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    )
    SELECT d.document_id, d.patient_id, p.site_id, d.document_type, d.title, d.content, d.metadata, d.version,
           d.updated_at AS created_at, d.created_at::text AS created_at_key,
           coalesce(v.created_by, d.created_by) AS created_by, s.candidates::integer AS candidates
      FROM sized AS s
      JOIN documents AS d ON d.document_id = s.document_id
      JOIN patients AS p ON p.patient_id = d.patient_id
      LEFT JOIN document_versions AS v ON v.document_id = d.document_id AND v.version = d.version
     WHERE ${pageCut(query)}
     ORDER BY d.created_at DESC, d.document_id DESC
  `);
  return toPage(rows);
}

/**
 * Makes the next version current if the document is still at
 * `expectedVersion`; null when someone else moved it first. The trigger files
 * the new version into document_versions, with the reason of the audit context.
 */
export async function addDocumentVersion(
  db: CommonQueryMethods,
  change: { documentId: string; expectedVersion: number; title: string; content: object; metadata: object },
): Promise<boolean> {
  const updated = await db.maybeOneFirst(sql.type(z.object({ version: z.number() }))`
    UPDATE documents
       SET version = version + 1, title = ${change.title},
           content = ${sql.jsonb(change.content as never)}, metadata = ${sql.jsonb(change.metadata as never)}
     WHERE document_id = ${change.documentId} AND version = ${change.expectedVersion}
    RETURNING version
  `);
  return updated !== null;
}

/**
 * A page of a document's versions, newest first, starting below
 * `beforeVersion`, cut in SQL by the stored sizes like listDocuments.
 */
export async function listDocumentVersions(
  db: CommonQueryMethods,
  query: PageLimits & { documentId: string; beforeVersion?: number },
): Promise<DocumentPage> {
  const rows = await db.any(sql.type(pagedDocumentRow)`
    WITH candidates AS (
      SELECT v.version, v.body_bytes + octet_length(v.title) AS bytes
        FROM document_versions AS v
       WHERE v.document_id = ${query.documentId}
         ${query.beforeVersion !== undefined ? sql.fragment`AND v.version < ${query.beforeVersion}` : sql.fragment``}
       ORDER BY v.version DESC
       LIMIT ${query.pageSize + 1}
    ), sized AS (
      SELECT c.version,
             row_number() OVER running AS position,
             sum(c.bytes) OVER running AS bytes_through,
             count(*) OVER () AS candidates
        FROM candidates AS c
      WINDOW running AS (ORDER BY c.version DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    )
    SELECT v.document_id, d.patient_id, p.site_id, d.document_type, v.title, v.content, v.metadata, v.version,
           v.created_at, v.created_at::text AS created_at_key, v.created_by, s.candidates::integer AS candidates
      FROM sized AS s
      JOIN document_versions AS v ON v.document_id = ${query.documentId} AND v.version = s.version
      JOIN documents AS d ON d.document_id = v.document_id
      JOIN patients AS p ON p.patient_id = d.patient_id
     WHERE ${pageCut(query)}
     ORDER BY v.version DESC
  `);
  return toPage(rows);
}
