import type { documentV1 } from '@clinical/contracts';
import { accessEventsOf, FieldValidator, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { documentAccesses, visibleDocument } from './documentAccess.js';
import { selectCurrentDocument, selectDocumentVersion } from './documentQueries.js';
import { toDocumentMessage } from './documentRecord.js';

/** GetDocument: the current version, or the one asked for; recorded as an access. */
export function getDocumentHandler(runtime: ServiceRuntime) {
  return async function getDocument(
    request: documentV1.GetDocumentRequest,
    context: HandlerContext,
  ): Promise<documentV1.GetDocumentResponse> {
    const v = new FieldValidator();
    v.uuid('document_id', request.documentId);
    v.number('version', request.version, { min: 0, max: 2_147_483_647, integer: true });
    v.throwIfInvalid();

    const documentId = request.documentId.toLowerCase();
    const row = visibleDocument(
      context,
      request.version === 0
        ? await selectCurrentDocument(runtime.pool, documentId)
        : await selectDocumentVersion(runtime.pool, documentId, request.version),
      documentId,
    );
    runtime.accessRecorder.record(accessEventsOf(context, documentAccesses([row])));
    return { document: toDocumentMessage(row) };
  };
}
