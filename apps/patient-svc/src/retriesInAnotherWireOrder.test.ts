import { randomUUID } from 'node:crypto';
import { documentV1, patientV1 } from '@clinical/contracts';
import { expectRetriesIndependentOfWireOrder, inAnotherWireOrder, startTestService, type TestService } from '@clinical/server-kit/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientServiceModule } from './patientServiceModule.js';
import { newPatient } from './testing/fixtures.js';

// Go randomises map order on every marshal and Python reorders it on copy: a retry must not depend on it,
// nor on the order of the fields themselves, which protobuf leaves free.
let service: TestService;
let token: string;
let patients: patientV1.PatientServiceClient;
let documents: documentV1.DocumentServiceClient;

beforeAll(async () => {
  service = await startTestService(patientServiceModule);
  token = await service.token({ sub: 'wire-order', roles: ['coordinator'], sites: ['SITE-A'] });
  patients = service.client(patientV1.PatientServiceDefinition, token);
  documents = service.client(documentV1.DocumentServiceDefinition, token);
});

afterAll(async () => {
  await service?.stop();
});

const content = (signed = true) => ({ signed, language: 'en', sections: [{ title: 'Purpose', id: 1 }, { title: 'Risks', id: 2 }] });
const metadata = () => ({ form: 'ICF', site: 'SITE-A', irb: { approved: true, board: 'IRB-7' } });

async function createdPatient(overrides: Partial<patientV1.Patient> = {}): Promise<patientV1.Patient> {
  return (await patients.createPatient({ patient: newPatient(overrides), requestId: '' })).patient!;
}

describe('a retry with the same request_id, in another wire order, gets the first response', () => {
  const patientService = patientV1.PatientServiceDefinition;
  const documentService = documentV1.DocumentServiceDefinition;
  const target = () => ({ address: service.address, token });

  it('CreatePatient', async () => {
    const requestId = randomUUID();
    const patient = newPatient();
    await expectRetriesIndependentOfWireOrder({
      ...target(),
      service: patientService,
      method: patientService.methods.createPatient,
      messages: [{ patient, requestId }],
      changed: [{ patient: { ...patient, treatmentArm: 'ARM-2' }, requestId }],
    });
  });

  it('BatchCreatePatients', async () => {
    const requestId = randomUUID();
    const requests = [newPatient(), newPatient()].map((patient) => ({ patient, requestId: '' }));
    await expectRetriesIndependentOfWireOrder({
      ...target(),
      service: patientService,
      method: patientService.methods.batchCreatePatients,
      messages: [{ requests, requestId }],
      changed: [{ requests: requests.slice(0, 1), requestId }],
    });
  });

  it('UpdatePatient', async () => {
    const patient = await createdPatient();
    const requestId = randomUUID();
    const request = { patient: { ...patient, treatmentArm: 'ARM-3' }, updateMask: ['treatment_arm'], reason: 'randomisation', requestId };
    await expectRetriesIndependentOfWireOrder({
      ...target(),
      service: patientService,
      method: patientService.methods.updatePatient,
      messages: [request],
      changed: [{ ...request, reason: 'another reason' }],
    });
  });

  it('ChangePatientStatus', async () => {
    const patient = await createdPatient({ status: patientV1.PatientStatus.PATIENT_STATUS_SCREENING });
    const requestId = randomUUID();
    const request = { patientId: patient.patientId, status: patientV1.PatientStatus.PATIENT_STATUS_ENROLLED, reason: 'eligible', etag: patient.etag, requestId };
    await expectRetriesIndependentOfWireOrder({
      ...target(),
      service: patientService,
      method: patientService.methods.changePatientStatus,
      messages: [request],
      changed: [{ ...request, status: patientV1.PatientStatus.PATIENT_STATUS_WITHDRAWN }],
    });
  });

  it('CreateDocument', async () => {
    const patient = await createdPatient();
    const requestId = randomUUID();
    const document = documentV1.Document.fromPartial({
      patientId: patient.patientId,
      documentType: documentV1.DocumentType.DOCUMENT_TYPE_CONSENT,
      title: 'Informed consent',
      content: content(),
      metadata: metadata(),
    });
    await expectRetriesIndependentOfWireOrder({
      ...target(),
      service: documentService,
      method: documentService.methods.createDocument,
      messages: [{ document, requestId }],
      changed: [{ document: { ...document, content: content(false) }, requestId }],
    });
  });

  it('CreateDocumentVersion', async () => {
    const patient = await createdPatient();
    const { document } = await documents.createDocument({
      document: documentV1.Document.fromPartial({
        patientId: patient.patientId,
        documentType: documentV1.DocumentType.DOCUMENT_TYPE_CONSENT,
        title: 'Informed consent',
        content: content(),
      }),
      requestId: '',
    });
    const requestId = randomUUID();
    const request = {
      documentId: document!.documentId,
      expectedVersion: 1,
      title: 'Informed consent, amended',
      content: content(),
      metadata: metadata(),
      reason: 'amendment',
      requestId,
    };
    await expectRetriesIndependentOfWireOrder({
      ...target(),
      service: documentService,
      method: documentService.methods.createDocumentVersion,
      messages: [request],
      changed: [{ ...request, metadata: { ...metadata(), form: 'ICF-2' } }],
    });
  });
});

describe('a page token', () => {
  it('is accepted with the same JSON filters in another wire order', async () => {
    const patient = await createdPatient();
    for (let index = 0; index < 3; index += 1) {
      await documents.createDocument({
        document: documentV1.Document.fromPartial({
          patientId: patient.patientId,
          documentType: documentV1.DocumentType.DOCUMENT_TYPE_CONSENT,
          title: `Consent ${index}`,
          content: content(),
          metadata: metadata(),
        }),
        requestId: '',
      });
    }
    const request = documentV1.ListDocumentsRequest.fromPartial({
      patientId: patient.patientId,
      contentFilter: { signed: true, language: 'en' },
      metadataFilter: { form: 'ICF', irb: { approved: true, board: 'IRB-7' } },
      pageSize: 1,
    });
    const first = await documents.listDocuments(request);
    expect(first.nextPageToken).not.toBe('');
    // The next page's request, as a client that reorders maps sends it.
    const next = documentV1.ListDocumentsRequest.decode(
      inAnotherWireOrder(documentV1.ListDocumentsRequest, { ...request, pageToken: first.nextPageToken }),
    );
    expect(Object.keys(next.metadataFilter!)).toEqual(['irb', 'form']);
    const second = await documents.listDocuments(next);
    expect(second.documents).toHaveLength(1);
    expect(second.documents[0]!.documentId).not.toBe(first.documents[0]!.documentId);
  });
});
