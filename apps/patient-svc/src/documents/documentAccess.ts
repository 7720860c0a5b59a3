import { NotFoundError } from '@clinical/errors';
import { canAccessSite, type HandlerContext } from '@clinical/server-kit';
import type { DocumentRow } from './documentRecord.js';

/**
 * The document if the caller may see its patient's site.
 * @throws NotFoundError otherwise: another site's document looks exactly like a missing one.
 */
export function visibleDocument(context: HandlerContext, row: DocumentRow | null, documentId: string): DocumentRow {
  if (!row || !canAccessSite(context.principal, row.site_id)) {
    throw new NotFoundError('document', documentId);
  }
  return row;
}

/** Access events for documents returned by a read. */
export const documentAccesses = (rows: readonly DocumentRow[]) =>
  rows.map((row) => ({ entityType: 'document', entityId: row.document_id, patientId: row.patient_id }));
