import { documentV1 } from '@clinical/contracts';
import { NotFoundError } from '@clinical/errors';
import {
  accessEventsOf,
  canAccessSite,
  FieldValidator,
  fitPage,
  pageSizeOf,
  type HandlerContext,
  type ServiceRuntime,
} from '@clinical/server-kit';
import { documentAccesses } from './documentAccess.js';
import { listDocuments, selectPatientSite } from './documentQueries.js';
import { documentTypeToName, toDocumentMessage } from './documentRecord.js';
import { DOCUMENT_PAGE, MAX_JSON_DEPTH, MAX_METADATA_BYTES, PAGE_BYTE_BUDGET } from './validateDocument.js';

/**
 * ListDocuments: current versions of one patient's documents, filtered by type
 * and by JSON containment of content and metadata, in keyset pages. A patient
 * at another site is NOT_FOUND, like a missing one. Pages stop at
 * PAGE_BYTE_BUDGET bytes of JSON, chosen in SQL (see listDocuments).
 */
export function listDocumentsHandler(runtime: ServiceRuntime) {
  return async function listDocumentsCall(
    request: documentV1.ListDocumentsRequest,
    context: HandlerContext,
  ): Promise<documentV1.ListDocumentsResponse> {
    const v = new FieldValidator();
    v.uuid('patient_id', request.patientId);
    const documentType = documentTypeToName.get(request.documentType);
    if (!documentType && request.documentType !== documentV1.DocumentType.DOCUMENT_TYPE_UNSPECIFIED) {
      v.add('document_type', 'has an unsupported value');
    }
    v.jsonDocument('content_filter', request.contentFilter, { maxBytes: MAX_METADATA_BYTES, maxDepth: MAX_JSON_DEPTH });
    v.jsonDocument('metadata_filter', request.metadataFilter, { maxBytes: MAX_METADATA_BYTES, maxDepth: MAX_JSON_DEPTH });
    v.throwIfInvalid();
    const pageSize = pageSizeOf(request.pageSize, DOCUMENT_PAGE);
    const patientId = request.patientId.toLowerCase();
    const filters = { patientId, documentType, content: request.contentFilter ?? null, metadata: request.metadataFilter ?? null };
    const cursor = runtime.pageTokens.decode(request.pageToken, filters);

    const site = await selectPatientSite(runtime.pool, patientId);
    if (site === null || !canAccessSite(context.principal, site)) {
      throw new NotFoundError('patient', patientId);
    }
    const { rows: page, more } = await listDocuments(runtime.pool, {
      patientId,
      documentType,
      contentContains: request.contentFilter,
      metadataContains: request.metadataFilter,
      after: cursor ? { createdAtKey: String(cursor[0]), documentId: String(cursor[1]) } : undefined,
      pageSize,
      byteBudget: PAGE_BYTE_BUDGET,
    });
    // The page also ends before the document that would take the response past what a client accepts.
    const fitted = fitPage(page, toDocumentMessage, documentV1.Document);
    const last = fitted.rows[fitted.rows.length - 1];
    runtime.accessRecorder.record(accessEventsOf(context, documentAccesses(fitted.rows)));
    return {
      documents: fitted.messages,
      nextPageToken: (more || fitted.trimmed) && last ? runtime.pageTokens.encode([last.created_at_key, last.document_id], filters) : '',
    };
  };
}
