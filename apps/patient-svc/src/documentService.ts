import { documentV1 } from '@clinical/contracts';
import { documentServicePolicies } from '@clinical/method-policies';
import { answeringConsistencyToken, defineService, type ServiceBinding, type ServiceRuntime } from '@clinical/server-kit';
import { createDocumentHandler } from './documents/createDocument.js';
import { createDocumentVersionHandler } from './documents/createDocumentVersion.js';
import { getDocumentHandler } from './documents/getDocument.js';
import { listDocumentsHandler } from './documents/listDocuments.js';
import { listDocumentVersionsHandler } from './documents/listDocumentVersions.js';

/** clinical.patient.v1.DocumentService bound to its handlers and method policies. */
export function documentService(runtime: ServiceRuntime): ServiceBinding {
  return defineService(
    documentV1.DocumentServiceDefinition,
    {
      createDocument: answeringConsistencyToken(runtime, createDocumentHandler(runtime)),
      getDocument: getDocumentHandler(runtime),
      listDocuments: listDocumentsHandler(runtime),
      createDocumentVersion: answeringConsistencyToken(runtime, createDocumentVersionHandler(runtime)),
      listDocumentVersions: listDocumentVersionsHandler(runtime),
    },
    documentServicePolicies,
  );
}
