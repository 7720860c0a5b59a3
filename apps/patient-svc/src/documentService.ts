import { documentV1 } from '@clinical/contracts';
import { defineService, notYetServed, type ServiceBinding } from '@clinical/server-kit';

const READERS = ['admin', 'coordinator', 'investigator', 'monitor'] as const;
const WRITERS = ['admin', 'coordinator', 'investigator'] as const;

/** clinical.patient.v1.DocumentService bound to its handlers and method policies. */
export function documentService(): ServiceBinding {
  return defineService(
    documentV1.DocumentServiceDefinition,
    {
      createDocument: notYetServed('CreateDocument'),
      getDocument: notYetServed('GetDocument'),
      listDocuments: notYetServed('ListDocuments'),
      createDocumentVersion: notYetServed('CreateDocumentVersion'),
      listDocumentVersions: notYetServed('ListDocumentVersions'),
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
