import { documentV1 } from '@clinical/contracts';
import { defineService, type ServiceBinding, type ServiceRuntime } from '@clinical/server-kit';
import { createDocumentHandler } from './documents/createDocument.js';
import { createDocumentVersionHandler } from './documents/createDocumentVersion.js';
import { getDocumentHandler } from './documents/getDocument.js';
import { listDocumentsHandler } from './documents/listDocuments.js';
import { listDocumentVersionsHandler } from './documents/listDocumentVersions.js';

const READERS = ['admin', 'coordinator', 'investigator', 'monitor'] as const;
const WRITERS = ['admin', 'coordinator', 'investigator'] as const;

/** clinical.patient.v1.DocumentService bound to its handlers and method policies. */
export function documentService(runtime: ServiceRuntime): ServiceBinding {
  return defineService(
    documentV1.DocumentServiceDefinition,
    {
      createDocument: createDocumentHandler(runtime),
      getDocument: getDocumentHandler(runtime),
      listDocuments: listDocumentsHandler(runtime),
      createDocumentVersion: createDocumentVersionHandler(runtime),
      listDocumentVersions: listDocumentVersionsHandler(runtime),
    },
    {
      createDocument: { roles: WRITERS, cost: 3 },
      getDocument: { roles: READERS, cost: 1 },
      listDocuments: { roles: READERS, cost: 5 },
      createDocumentVersion: { roles: WRITERS, cost: 3 },
      listDocumentVersions: { roles: READERS, cost: 5 },
    },
  );
}
