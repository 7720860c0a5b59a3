import type { documentV1 } from '@clinical/contracts';
import {
  accessEventsOf,
  FieldValidator,
  pageSizeOf,
  type HandlerContext,
  type ServiceRuntime,
} from '@clinical/server-kit';
import { documentAccesses, visibleDocument } from './documentAccess.js';
import { listDocumentVersions, selectCurrentDocument } from './documentQueries.js';
import { toDocumentMessage } from './documentRecord.js';

const PAGE = { defaultSize: 50, maxSize: 200 };

/** ListDocumentVersions: every version of a document, newest first, in keyset pages. */
export function listDocumentVersionsHandler(runtime: ServiceRuntime) {
  return async function listDocumentVersionsCall(
    request: documentV1.ListDocumentVersionsRequest,
    context: HandlerContext,
  ): Promise<documentV1.ListDocumentVersionsResponse> {
    const v = new FieldValidator();
    v.uuid('document_id', request.documentId);
    v.throwIfInvalid();
    const pageSize = pageSizeOf(request.pageSize, PAGE);
    const documentId = request.documentId.toLowerCase();
    const cursor = runtime.pageTokens.decode(request.pageToken, { documentId });

    visibleDocument(context, await selectCurrentDocument(runtime.pool, documentId), documentId);
    const rows = await listDocumentVersions(runtime.pool, {
      documentId,
      beforeVersion: cursor ? Number(cursor[0]) : undefined,
      limit: pageSize + 1,
    });
    const page = rows.slice(0, pageSize);
    const last = page[page.length - 1];
    runtime.accessRecorder.record(accessEventsOf(context, documentAccesses(page)));
    return {
      documents: page.map(toDocumentMessage),
      nextPageToken: rows.length > pageSize && last ? runtime.pageTokens.encode([last.version], { documentId }) : '',
    };
  };
}
