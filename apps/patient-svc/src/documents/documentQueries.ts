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

export interface DocumentListQuery {
  readonly patientId: string;
  readonly documentType?: string;
  readonly contentContains?: object;
  readonly metadataContains?: object;
  /** Start after this (created_at, document_id), newest first. */
  readonly after?: { createdAtKey: string; documentId: string };
  readonly limit: number;
}

/** Current versions of a patient's documents, newest first; JSON containment uses the GIN indexes. */
export async function listDocuments(db: CommonQueryMethods, query: DocumentListQuery): Promise<readonly DocumentRow[]> {
  const conditions = [
    sql.fragment`d.patient_id = ${query.patientId}`,
    ...(query.documentType ? [sql.fragment`d.document_type = ${query.documentType}`] : []),
    ...(query.contentContains ? [sql.fragment`d.content @> ${sql.jsonb(query.contentContains as never)}`] : []),
    ...(query.metadataContains ? [sql.fragment`d.metadata @> ${sql.jsonb(query.metadataContains as never)}`] : []),
    ...(query.after
      ? [sql.fragment`(d.created_at, d.document_id) < (${query.after.createdAtKey}::timestamptz, ${query.after.documentId}::uuid)`]
      : []),
  ];
  return db.any(sql.type(documentRow)`
    SELECT d.document_id, d.patient_id, p.site_id, d.document_type, d.title, d.content, d.metadata, d.version,
           d.updated_at AS created_at, d.created_at::text AS created_at_key,
           coalesce(v.created_by, d.created_by) AS created_by
      FROM documents AS d
      JOIN patients AS p USING (patient_id)
      LEFT JOIN document_versions AS v ON v.document_id = d.document_id AND v.version = d.version
     WHERE ${sql.join(conditions, sql.fragment` AND `)}
     ORDER BY d.created_at DESC, d.document_id DESC
     LIMIT ${query.limit}
  `);
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

/** A page of a document's versions, newest first, starting below `beforeVersion`. */
export async function listDocumentVersions(
  db: CommonQueryMethods,
  query: { documentId: string; beforeVersion?: number; limit: number },
): Promise<readonly DocumentRow[]> {
  return db.any(sql.type(documentRow)`
    SELECT v.document_id, d.patient_id, p.site_id, d.document_type, v.title, v.content, v.metadata, v.version,
           v.created_at, v.created_at::text AS created_at_key, v.created_by
      FROM document_versions AS v
      JOIN documents AS d USING (document_id)
      JOIN patients AS p USING (patient_id)
     WHERE v.document_id = ${query.documentId}
       ${query.beforeVersion !== undefined ? sql.fragment`AND v.version < ${query.beforeVersion}` : sql.fragment``}
     ORDER BY v.version DESC
     LIMIT ${query.limit}
  `);
}
