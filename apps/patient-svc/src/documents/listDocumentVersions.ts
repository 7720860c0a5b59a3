import { documentV1 } from '@clinical/contracts';
import {
  accessEventsOf,
  FieldValidator,
  fitPage,
  pageSizeOf,
  type HandlerContext,
  type ServiceRuntime,
} from '@clinical/server-kit';
import { documentAccesses, visibleDocument } from './documentAccess.js';
import { listDocumentVersions, selectCurrentDocument } from './documentQueries.js';
import { toDocumentMessage } from './documentRecord.js';
import { DOCUMENT_PAGE, PAGE_BYTE_BUDGET } from './validateDocument.js';

/**
 * ListDocumentVersions: every version of a document, newest first, in keyset
 * pages that stop at PAGE_BYTE_BUDGET bytes of JSON (chosen in SQL).
 */
export function listDocumentVersionsHandler(runtime: ServiceRuntime) {
  return async function listDocumentVersionsCall(
    request: documentV1.ListDocumentVersionsRequest,
    context: HandlerContext,
  ): Promise<documentV1.ListDocumentVersionsResponse> {
    const v = new FieldValidator();
    v.uuid('document_id', request.documentId);
    v.throwIfInvalid();
    const pageSize = pageSizeOf(request.pageSize, DOCUMENT_PAGE);
    const documentId = request.documentId.toLowerCase();
    const cursor = runtime.pageTokens.decode(request.pageToken, { documentId });

    visibleDocument(context, await selectCurrentDocument(runtime.pool, documentId), documentId);
    const { rows: page, more } = await listDocumentVersions(runtime.pool, {
      documentId,
      beforeVersion: cursor ? Number(cursor[0]) : undefined,
      pageSize,
      byteBudget: PAGE_BYTE_BUDGET,
    });
    // The page also ends before the version that would take the response past what a client accepts.
    const fitted = fitPage(page, toDocumentMessage, documentV1.Document);
    const last = fitted.rows[fitted.rows.length - 1];
    runtime.accessRecorder.record(accessEventsOf(context, documentAccesses(fitted.rows)));
    return {
      documents: fitted.messages,
      nextPageToken: (more || fitted.trimmed) && last ? runtime.pageTokens.encode([last.version], { documentId }) : '',
    };
  };
}
