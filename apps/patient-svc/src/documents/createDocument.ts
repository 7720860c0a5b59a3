import { documentV1 } from '@clinical/contracts';
import { NotFoundError } from '@clinical/errors';
import {
  canAccessSite,
  FieldValidator,
  messageCodec,
  runAuditedMutation,
  type HandlerContext,
  type ServiceRuntime,
} from '@clinical/server-kit';
import { insertDocument, selectPatientSite } from './documentQueries.js';
import { documentTypeToName, toDocumentMessage } from './documentRecord.js';
import { validateDocumentBody } from './validateDocument.js';

const responseCodec = messageCodec(documentV1.CreateDocumentResponse);

/** CreateDocument: version 1 of a document of a patient the caller can see; audited; idempotent with a request_id. */
export function createDocumentHandler(runtime: ServiceRuntime) {
  return async function createDocument(
    request: documentV1.CreateDocumentRequest,
    context: HandlerContext,
  ): Promise<documentV1.CreateDocumentResponse> {
    const v = new FieldValidator();
    const document = request.document;
    if (!document) {
      v.add('document', 'is required');
    }
    v.uuid('document.patient_id', document?.patientId ?? '');
    const documentType = document ? documentTypeToName.get(document.documentType) : undefined;
    if (document && !documentType) {
      v.add('document.document_type', document.documentType === 0 ? 'is required' : 'has an unsupported value');
    }
    validateDocumentBody(v, 'document.', { title: document?.title ?? '', content: document?.content, metadata: document?.metadata });
    v.uuid('request_id', request.requestId, false);
    v.throwIfInvalid();

    const patientId = (document as documentV1.Document).patientId.toLowerCase();
    return runAuditedMutation(
      runtime,
      context,
      {
        request,
        requestType: documentV1.CreateDocumentRequest,
        responseCodec,
      },
      async (transaction) => {
        const site = await selectPatientSite(transaction, patientId);
        if (site === null || !canAccessSite(context.principal, site)) {
          throw new NotFoundError('patient', patientId);
        }
        const row = await insertDocument(transaction, {
          patientId,
          documentType: documentType as string,
          title: (document as documentV1.Document).title,
          content: document?.content ?? {},
          metadata: document?.metadata ?? {},
        });
        return { document: toDocumentMessage(row) };
      },
    );
  };
}
