import { documentV1 } from '@clinical/contracts';
import { z } from 'zod';

const { DocumentType } = documentV1;

/** document_type as stored (the old system's words) for each contract value. */
export const documentTypeToName = new Map<documentV1.DocumentType, string>([
  [DocumentType.DOCUMENT_TYPE_PROTOCOL, 'protocol'],
  [DocumentType.DOCUMENT_TYPE_CONSENT, 'consent'],
  [DocumentType.DOCUMENT_TYPE_CSR, 'csr'],
  [DocumentType.DOCUMENT_TYPE_CRF, 'crf'],
  [DocumentType.DOCUMENT_TYPE_LAB_REPORT, 'lab_report'],
  [DocumentType.DOCUMENT_TYPE_ADVERSE_EVENT, 'adverse_event'],
  [DocumentType.DOCUMENT_TYPE_IMAGING, 'imaging'],
  [DocumentType.DOCUMENT_TYPE_OTHER, 'other'],
]);
const nameToDocumentType = new Map([...documentTypeToName].map(([type, name]) => [name, type]));

/** One version of a document, with what access checks need (the patient's site). */
export const documentRow = z.object({
  document_id: z.string().uuid(),
  patient_id: z.string().uuid(),
  site_id: z.string(),
  document_type: z.string(),
  title: z.string(),
  content: z.record(z.unknown()),
  metadata: z.record(z.unknown()),
  version: z.number().int(),
  created_at: z.date(),
  /** created_at at full (microsecond) precision, for keyset cursors. */
  created_at_key: z.string(),
  created_by: z.string(),
});
export type DocumentRow = z.infer<typeof documentRow>;

export function toDocumentMessage(row: DocumentRow): documentV1.Document {
  return {
    documentId: row.document_id,
    patientId: row.patient_id,
    documentType: nameToDocumentType.get(row.document_type) ?? DocumentType.DOCUMENT_TYPE_OTHER,
    title: row.title,
    content: row.content,
    metadata: row.metadata,
    version: row.version,
    createTime: row.created_at,
    createdBy: row.created_by,
  };
}
