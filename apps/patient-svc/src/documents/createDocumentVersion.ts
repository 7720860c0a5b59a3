import { documentV1 } from '@clinical/contracts';
import { AbortedError } from '@clinical/errors';
import {
  FieldValidator,
  messageCodec,
  runAuditedMutation,
  type HandlerContext,
  type ServiceRuntime,
} from '@clinical/server-kit';
import { visibleDocument } from './documentAccess.js';
import { addDocumentVersion, selectCurrentDocument } from './documentQueries.js';
import { toDocumentMessage } from './documentRecord.js';
import { validateDocumentBody } from './validateDocument.js';

const responseCodec = messageCodec(documentV1.CreateDocumentVersionResponse);

/**
 * CreateDocumentVersion: the next version, if `expected_version` is still the
 * current one (ABORTED otherwise). Old versions are never touched: the trigger
 * files the new one beside them, with the reason.
 */
export function createDocumentVersionHandler(runtime: ServiceRuntime) {
  return async function createDocumentVersion(
    request: documentV1.CreateDocumentVersionRequest,
    context: HandlerContext,
  ): Promise<documentV1.CreateDocumentVersionResponse> {
    const v = new FieldValidator();
    v.uuid('document_id', request.documentId);
    v.number('expected_version', request.expectedVersion, { min: 1, max: 2_147_483_646, integer: true });
    validateDocumentBody(v, '', request);
    v.string('reason', request.reason, { max: 500 });
    v.uuid('request_id', request.requestId, false);
    v.throwIfInvalid();

    const documentId = request.documentId.toLowerCase();
    return runAuditedMutation(
      runtime,
      context,
      {
        request,
        requestType: documentV1.CreateDocumentVersionRequest,
        reason: request.reason,
        responseCodec,
      },
      async (transaction) => {
        const current = visibleDocument(context, await selectCurrentDocument(transaction, documentId), documentId);
        const added =
          current.version === request.expectedVersion &&
          (await addDocumentVersion(transaction, {
            documentId,
            expectedVersion: request.expectedVersion,
            title: request.title,
            content: request.content ?? {},
            metadata: request.metadata ?? {},
          }));
        if (!added) {
          throw new AbortedError(
            `the document is no longer at version ${request.expectedVersion}; read the current version and retry`,
          );
        }
        const row = visibleDocument(context, await selectCurrentDocument(transaction, documentId), documentId);
        return { document: toDocumentMessage(row) };
      },
    );
  };
}
