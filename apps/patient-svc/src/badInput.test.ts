/**
 * Malformed requests, table-driven: each must get a precise INVALID_ARGUMENT
 * naming the field (or NOT_FOUND for ids that name nothing visible), never
 * INTERNAL, and none may write anything.
 */
import { randomUUID } from 'node:crypto';
import { documentV1, patientV1 } from '@clinical/contracts';
import { sendRawRequests, startTestService, type TestService } from '@clinical/server-kit/testing';
import * as grpc from '@grpc/grpc-js';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientServiceModule } from './patientServiceModule.js';
import { expectStatus, newPatient } from './testing/fixtures.js';

const { PatientStatus } = patientV1;
const { DocumentType } = documentV1;

let service: TestService;
let admin: pg.Client;
let patients: patientV1.PatientServiceClient;
let documents: documentV1.DocumentServiceClient;
let existing: patientV1.Patient;
let existingDocument: documentV1.Document;
let firstPageToken: string;

interface Case {
  readonly name: string;
  readonly call: () => Promise<unknown>;
  readonly status: Status;
  /** The field path the error must name (INVALID_ARGUMENT). */
  readonly field?: string;
  /** What the error must say of it, when that matters. */
  readonly description?: RegExp;
}

const patientWith = (change: (patient: patientV1.Patient) => void): patientV1.Patient => {
  const patient = newPatient();
  change(patient);
  return patient;
};
const create = (change: (patient: patientV1.Patient) => void) => () =>
  patients.createPatient({ patient: patientWith(change), requestId: '' });
const demographics = (change: Partial<patientV1.Demographics>) =>
  create((patient) => {
    patient.demographics = { ...patient.demographics!, ...change };
  });
const history = (change: Partial<patientV1.MedicalHistory>) =>
  create((patient) => {
    patient.medicalHistory = { ...patient.medicalHistory!, ...change };
  });
const update = (request: Partial<patientV1.UpdatePatientRequest>) => () =>
  patients.updatePatient({ patient: existing, updateMask: ['treatment_arm'], reason: '', requestId: '', ...request });
const changeStatus = (request: Partial<patientV1.ChangePatientStatusRequest>) => () =>
  patients.changePatientStatus({
    patientId: existing.patientId,
    status: PatientStatus.PATIENT_STATUS_COMPLETED,
    reason: 'reason',
    etag: existing.etag,
    requestId: '',
    ...request,
  });
const list = (request: Partial<patientV1.ListPatientsRequest>) => () =>
  patients.listPatients(patientV1.ListPatientsRequest.fromPartial(request));
const document = (change: Partial<documentV1.Document>) => () =>
  documents.createDocument({
    document: documentV1.Document.fromPartial({
      patientId: existing.patientId,
      documentType: DocumentType.DOCUMENT_TYPE_CRF,
      title: 'Visit 1 CRF',
      content: { visit: 1 },
      ...change,
    }),
    requestId: '',
  });
const date = (year: number, month: number, day: number) => ({ year, month, day });
const nestedJson = (depth: number): Record<string, unknown> => (depth === 0 ? { leaf: 1 } : { next: nestedJson(depth - 1) });
const future = new Date().getUTCFullYear() + 1;

const CASES: readonly Case[] = [
  { name: 'GetPatient: empty id', call: () => patients.getPatient({ patientId: '' }), status: Status.INVALID_ARGUMENT, field: 'patient_id' },
  { name: 'GetPatient: not a UUID', call: () => patients.getPatient({ patientId: 'patient-1' }), status: Status.INVALID_ARGUMENT, field: 'patient_id' },
  { name: 'GetPatient: UUID with a suffix', call: () => patients.getPatient({ patientId: `${randomUUID()}x` }), status: Status.INVALID_ARGUMENT, field: 'patient_id' },
  { name: 'GetPatient: SQL in the id', call: () => patients.getPatient({ patientId: "' OR 1=1 --" }), status: Status.INVALID_ARGUMENT, field: 'patient_id' },
  { name: 'GetPatient: unknown id', call: () => patients.getPatient({ patientId: randomUUID() }), status: Status.NOT_FOUND },
  { name: 'CreatePatient: no patient', call: () => patients.createPatient({ patient: undefined, requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'patient' },
  { name: 'CreatePatient: empty subject number', call: create((p) => (p.subjectNumber = '')), status: Status.INVALID_ARGUMENT, field: 'patient.subject_number' },
  { name: 'CreatePatient: subject number of 51 chars', call: create((p) => (p.subjectNumber = 'S'.repeat(51))), status: Status.INVALID_ARGUMENT, field: 'patient.subject_number' },
  { name: 'CreatePatient: subject number with a space', call: create((p) => (p.subjectNumber = 'RA001 001')), status: Status.INVALID_ARGUMENT, field: 'patient.subject_number' },
  { name: 'CreatePatient: subject number with an emoji', call: create((p) => (p.subjectNumber = 'RA001-🙂')), status: Status.INVALID_ARGUMENT, field: 'patient.subject_number' },
  { name: 'CreatePatient: subject number with a NUL', call: create((p) => (p.subjectNumber = 'RA\u0000001')), status: Status.INVALID_ARGUMENT, field: 'patient.subject_number' },
  { name: 'CreatePatient: empty site', call: create((p) => (p.siteId = '')), status: Status.INVALID_ARGUMENT, field: 'patient.site_id' },
  { name: 'CreatePatient: site of 51 chars', call: create((p) => (p.siteId = 'S'.repeat(51))), status: Status.INVALID_ARGUMENT, field: 'patient.site_id' },
  { name: 'CreatePatient: empty protocol', call: create((p) => (p.protocolId = '')), status: Status.INVALID_ARGUMENT, field: 'patient.protocol_id' },
  { name: 'CreatePatient: no enrollment date', call: create((p) => (p.enrollmentDate = undefined)), status: Status.INVALID_ARGUMENT, field: 'patient.enrollment_date' },
  { name: 'CreatePatient: February 30th', call: create((p) => (p.enrollmentDate = date(2024, 2, 30))), status: Status.INVALID_ARGUMENT, field: 'patient.enrollment_date' },
  { name: 'CreatePatient: month 13', call: create((p) => (p.enrollmentDate = date(2024, 13, 1))), status: Status.INVALID_ARGUMENT, field: 'patient.enrollment_date' },
  { name: 'CreatePatient: day 0', call: create((p) => (p.enrollmentDate = date(2024, 1, 0))), status: Status.INVALID_ARGUMENT, field: 'patient.enrollment_date' },
  { name: 'CreatePatient: year 0', call: create((p) => (p.enrollmentDate = date(0, 1, 1))), status: Status.INVALID_ARGUMENT, field: 'patient.enrollment_date' },
  { name: 'CreatePatient: negative month', call: create((p) => (p.enrollmentDate = date(2024, -1, 1))), status: Status.INVALID_ARGUMENT, field: 'patient.enrollment_date' },
  { name: 'CreatePatient: enrolled next year', call: create((p) => (p.enrollmentDate = date(future, 1, 1))), status: Status.INVALID_ARGUMENT, field: 'patient.enrollment_date' },
  { name: 'CreatePatient: enrolled in 1989', call: create((p) => (p.enrollmentDate = date(1989, 12, 31))), status: Status.INVALID_ARGUMENT, field: 'patient.enrollment_date' },
  { name: 'CreatePatient: created COMPLETED', call: create((p) => (p.status = PatientStatus.PATIENT_STATUS_COMPLETED)), status: Status.INVALID_ARGUMENT, field: 'patient.status' },
  { name: 'CreatePatient: unknown status 99', call: create((p) => (p.status = 99 as patientV1.PatientStatus)), status: Status.INVALID_ARGUMENT, field: 'patient.status' },
  { name: 'CreatePatient: treatment arm of 51 chars', call: create((p) => (p.treatmentArm = 'A'.repeat(51))), status: Status.INVALID_ARGUMENT, field: 'patient.treatment_arm' },
  { name: 'CreatePatient: unknown sex 42', call: demographics({ sex: 42 as patientV1.Sex }), status: Status.INVALID_ARGUMENT, field: 'patient.demographics.sex' },
  { name: 'CreatePatient: born in 1800', call: demographics({ birthYear: 1800 }), status: Status.INVALID_ARGUMENT, field: 'patient.demographics.birth_year' },
  { name: 'CreatePatient: born next year', call: demographics({ birthYear: future }), status: Status.INVALID_ARGUMENT, field: 'patient.demographics.birth_year' },
  { name: 'CreatePatient: negative height', call: demographics({ heightCm: -5 }), status: Status.INVALID_ARGUMENT, field: 'patient.demographics.height_cm' },
  { name: 'CreatePatient: weight of 10 t', call: demographics({ weightKg: 10_000 }), status: Status.INVALID_ARGUMENT, field: 'patient.demographics.weight_kg' },
  { name: 'CreatePatient: weight NaN', call: demographics({ weightKg: Number.NaN }), status: Status.INVALID_ARGUMENT, field: 'patient.demographics.weight_kg' },
  { name: 'CreatePatient: weight Infinity', call: demographics({ weightKg: Number.POSITIVE_INFINITY }), status: Status.INVALID_ARGUMENT, field: 'patient.demographics.weight_kg' },
  { name: 'CreatePatient: 11 races', call: demographics({ race: Array.from({ length: 11 }, () => 'x') }), status: Status.INVALID_ARGUMENT, field: 'patient.demographics.race' },
  { name: 'CreatePatient: an empty race', call: demographics({ race: [''] }), status: Status.INVALID_ARGUMENT, field: 'patient.demographics.race[0]' },
  { name: 'CreatePatient: ethnicity of 101 chars', call: demographics({ ethnicity: 'e'.repeat(101) }), status: Status.INVALID_ARGUMENT, field: 'patient.demographics.ethnicity' },
  { name: 'CreatePatient: condition without a code', call: history({ conditions: [{ code: '', description: '', onsetDate: undefined, ongoing: false }] }), status: Status.INVALID_ARGUMENT, field: 'patient.medical_history.conditions[0].code' },
  { name: 'CreatePatient: condition code of 33 chars', call: history({ conditions: [{ code: 'C'.repeat(33), description: '', onsetDate: undefined, ongoing: false }] }), status: Status.INVALID_ARGUMENT, field: 'patient.medical_history.conditions[0].code' },
  { name: 'CreatePatient: condition onset April 31st', call: history({ conditions: [{ code: 'I10', description: '', onsetDate: date(2020, 4, 31), ongoing: true }] }), status: Status.INVALID_ARGUMENT, field: 'patient.medical_history.conditions[0].onset_date' },
  { name: 'CreatePatient: medication ended before it began', call: history({ medications: [{ name: 'X', dose: '', startDate: date(2020, 5, 1), endDate: date(2020, 4, 1) }] }), status: Status.INVALID_ARGUMENT, field: 'patient.medical_history.medications[0].end_date' },
  { name: 'CreatePatient: 201 medications', call: history({ medications: Array.from({ length: 201 }, () => ({ name: 'X', dose: '', startDate: undefined, endDate: undefined })) }), status: Status.INVALID_ARGUMENT, field: 'patient.medical_history.medications' },
  { name: 'CreatePatient: allergy of 201 chars', call: history({ allergies: ['a'.repeat(201)] }), status: Status.INVALID_ARGUMENT, field: 'patient.medical_history.allergies[0]' },
  { name: 'CreatePatient: request_id not a UUID', call: () => patients.createPatient({ patient: newPatient(), requestId: 'retry-1' }), status: Status.INVALID_ARGUMENT, field: 'request_id' },
  { name: 'BatchCreatePatients: empty', call: () => patients.batchCreatePatients({ requests: [], requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'requests' },
  { name: 'BatchCreatePatients: bad entry names its index', call: () => patients.batchCreatePatients({ requests: [{ patient: newPatient(), requestId: '' }, { patient: patientWith((p) => (p.protocolId = '')), requestId: '' }], requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'requests[1].patient.protocol_id' },
  { name: 'BatchCreatePatients: missing patient in an entry', call: () => patients.batchCreatePatients({ requests: [{ patient: undefined, requestId: '' }], requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'requests[0].patient' },
  { name: 'ListPatients: negative page size', call: list({ pageSize: -1 }), status: Status.INVALID_ARGUMENT, field: 'page_size' },
  { name: 'ListPatients: garbage page token', call: list({ pageToken: 'bm90IGEgdG9rZW4' }), status: Status.INVALID_ARGUMENT, field: 'page_token' },
  { name: 'ListPatients: page token with other filters', call: () => patients.listPatients(patientV1.ListPatientsRequest.fromPartial({ protocolId: 'OTHER', pageToken: firstPageToken })), status: Status.INVALID_ARGUMENT, field: 'page_token' },
  { name: 'ListPatients: page token with a tampered cursor', call: () => list({ pageToken: `${firstPageToken.slice(0, -6)}${Buffer.from('{"c":1}').toString('base64url')}` })(), status: Status.INVALID_ARGUMENT, field: 'page_token' },
  { name: 'ListPatients: unknown status', call: list({ status: 77 as patientV1.PatientStatus }), status: Status.INVALID_ARGUMENT, field: 'status' },
  { name: 'ListPatients: inverted date range', call: list({ enrolledOnOrAfter: date(2024, 6, 1), enrolledOnOrBefore: date(2024, 1, 1) }), status: Status.INVALID_ARGUMENT, field: 'enrolled_on_or_before' },
  { name: 'ListPatients: impossible date', call: list({ enrolledOnOrAfter: date(2023, 2, 29) }), status: Status.INVALID_ARGUMENT, field: 'enrolled_on_or_after' },
  { name: 'UpdatePatient: no patient', call: () => patients.updatePatient({ patient: undefined, updateMask: ['treatment_arm'], reason: '', requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'patient' },
  { name: 'UpdatePatient: bad patient id', call: () => patients.updatePatient({ patient: { ...existing, patientId: 'nope' }, updateMask: ['treatment_arm'], reason: '', requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'patient.patient_id' },
  { name: 'UpdatePatient: no etag', call: () => patients.updatePatient({ patient: { ...existing, etag: '' }, updateMask: ['treatment_arm'], reason: '', requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'patient.etag' },
  { name: 'UpdatePatient: forged etag', call: () => patients.updatePatient({ patient: { ...existing, etag: 'W/"abc"' }, updateMask: ['treatment_arm'], reason: '', requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'patient.etag' },
  { name: 'UpdatePatient: unknown mask path', call: update({ updateMask: ['demographics.favourite_food'] }), status: Status.INVALID_ARGUMENT, field: 'update_mask.paths[0]' },
  { name: 'UpdatePatient: immutable mask path', call: update({ updateMask: ['treatment_arm', 'protocol_id'] }), status: Status.INVALID_ARGUMENT, field: 'update_mask.paths[1]' },
  { name: 'UpdatePatient: invalid new enrollment date', call: () => update({ patient: { ...existing, enrollmentDate: date(2024, 2, 31) }, updateMask: ['enrollment_date'] })(), status: Status.INVALID_ARGUMENT, field: 'patient.enrollment_date' },
  { name: 'UpdatePatient: reason of 501 chars', call: update({ reason: 'r'.repeat(501) }), status: Status.INVALID_ARGUMENT, field: 'reason' },
  { name: 'UpdatePatient: unknown patient', call: () => patients.updatePatient({ patient: { ...existing, patientId: randomUUID() }, updateMask: ['treatment_arm'], reason: '', requestId: '' }), status: Status.NOT_FOUND },
  { name: 'ChangePatientStatus: no status', call: changeStatus({ status: PatientStatus.PATIENT_STATUS_UNSPECIFIED }), status: Status.INVALID_ARGUMENT, field: 'status' },
  { name: 'ChangePatientStatus: unknown status', call: changeStatus({ status: 12 as patientV1.PatientStatus }), status: Status.INVALID_ARGUMENT, field: 'status' },
  { name: 'ChangePatientStatus: no reason', call: changeStatus({ reason: '' }), status: Status.INVALID_ARGUMENT, field: 'reason' },
  { name: 'ChangePatientStatus: reason of 501 chars', call: changeStatus({ reason: 'r'.repeat(501) }), status: Status.INVALID_ARGUMENT, field: 'reason' },
  { name: 'ChangePatientStatus: garbage etag', call: changeStatus({ etag: '12' }), status: Status.INVALID_ARGUMENT, field: 'etag' },
  { name: 'ChangePatientStatus: bad patient id', call: changeStatus({ patientId: '1234' }), status: Status.INVALID_ARGUMENT, field: 'patient_id' },
  { name: 'CreateDocument: no document', call: () => documents.createDocument({ document: undefined, requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'document' },
  { name: 'CreateDocument: bad patient id', call: document({ patientId: 'p-1' }), status: Status.INVALID_ARGUMENT, field: 'document.patient_id' },
  { name: 'CreateDocument: no type', call: document({ documentType: DocumentType.DOCUMENT_TYPE_UNSPECIFIED }), status: Status.INVALID_ARGUMENT, field: 'document.document_type' },
  { name: 'CreateDocument: unknown type 99', call: document({ documentType: 99 as documentV1.DocumentType }), status: Status.INVALID_ARGUMENT, field: 'document.document_type' },
  { name: 'CreateDocument: empty title', call: document({ title: '' }), status: Status.INVALID_ARGUMENT, field: 'document.title' },
  { name: 'CreateDocument: title of 501 chars', call: document({ title: 't'.repeat(501) }), status: Status.INVALID_ARGUMENT, field: 'document.title' },
  { name: 'CreateDocument: content over 1 MiB', call: document({ content: { text: 'x'.repeat(1_048_577) } }), status: Status.INVALID_ARGUMENT, field: 'document.content' },
  { name: 'CreateDocument: metadata over 64 KiB', call: document({ metadata: { text: 'x'.repeat(65_537) } }), status: Status.INVALID_ARGUMENT, field: 'document.metadata' },
  { name: 'CreateDocument: NaN in content', call: document({ content: { dose: Number.NaN } }), status: Status.INVALID_ARGUMENT, field: 'document.content' },
  { name: 'CreateDocument: Infinity deep in metadata', call: document({ metadata: { a: [{ b: Number.NEGATIVE_INFINITY }] } }), status: Status.INVALID_ARGUMENT, field: 'document.metadata' },
  { name: 'CreateDocument: NUL in a content value', call: document({ content: { note: 'a\u0000b' } }), status: Status.INVALID_ARGUMENT, field: 'document.content' },
  { name: 'CreateDocument: NUL in a content key', call: document({ content: { ['k\u0000']: 1 } }), status: Status.INVALID_ARGUMENT, field: 'document.content' },
  { name: 'CreateDocument: content nested 33 deep', call: document({ content: nestedJson(31) }), status: Status.INVALID_ARGUMENT, field: 'document.content' },
  { name: 'ListDocuments: NaN in a filter', call: () => documents.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId: existing.patientId, metadataFilter: { x: Number.NaN } })), status: Status.INVALID_ARGUMENT, field: 'metadata_filter' },
  { name: 'CreateDocumentVersion: Infinity in content', call: () => documents.createDocumentVersion({ documentId: existingDocument.documentId, expectedVersion: 1, title: 't', content: { x: Number.POSITIVE_INFINITY }, metadata: {}, reason: '', requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'content' },
  { name: 'CreateDocument: unknown patient', call: document({ patientId: randomUUID() }), status: Status.NOT_FOUND },
  { name: 'GetDocument: bad id', call: () => documents.getDocument({ documentId: 'doc', version: 0 }), status: Status.INVALID_ARGUMENT, field: 'document_id' },
  { name: 'GetDocument: negative version', call: () => documents.getDocument({ documentId: existingDocument.documentId, version: -1 }), status: Status.INVALID_ARGUMENT, field: 'version' },
  { name: 'GetDocument: version that does not exist', call: () => documents.getDocument({ documentId: existingDocument.documentId, version: 9 }), status: Status.NOT_FOUND },
  { name: 'ListDocuments: bad patient id', call: () => documents.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId: 'x' })), status: Status.INVALID_ARGUMENT, field: 'patient_id' },
  { name: 'ListDocuments: negative page size', call: () => documents.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId: existing.patientId, pageSize: -5 })), status: Status.INVALID_ARGUMENT, field: 'page_size' },
  { name: 'ListDocuments: oversized filter', call: () => documents.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId: existing.patientId, contentFilter: { a: 'x'.repeat(70_000) } })), status: Status.INVALID_ARGUMENT, field: 'content_filter' },
  { name: 'ListDocuments: unknown type', call: () => documents.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId: existing.patientId, documentType: 42 as documentV1.DocumentType })), status: Status.INVALID_ARGUMENT, field: 'document_type' },
  { name: 'ListDocuments: forged page token', call: () => documents.listDocuments(documentV1.ListDocumentsRequest.fromPartial({ patientId: existing.patientId, pageToken: 'a.b' })), status: Status.INVALID_ARGUMENT, field: 'page_token' },
  { name: 'CreateDocumentVersion: expected version 0', call: () => documents.createDocumentVersion({ documentId: existingDocument.documentId, expectedVersion: 0, title: 't', content: {}, metadata: {}, reason: '', requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'expected_version' },
  { name: 'CreateDocumentVersion: no title', call: () => documents.createDocumentVersion({ documentId: existingDocument.documentId, expectedVersion: 1, title: '', content: {}, metadata: {}, reason: '', requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'title' },
  { name: 'CreateDocumentVersion: unknown document', call: () => documents.createDocumentVersion({ documentId: randomUUID(), expectedVersion: 1, title: 't', content: {}, metadata: {}, reason: '', requestId: '' }), status: Status.NOT_FOUND },
  { name: 'ListDocumentVersions: bad id', call: () => documents.listDocumentVersions({ documentId: '-', pageSize: 0, pageToken: '' }), status: Status.INVALID_ARGUMENT, field: 'document_id' },
  { name: 'CreatePatient: NUL in the treatment arm', call: create((patient) => { patient.treatmentArm = 'a\u0000b'; }), status: Status.INVALID_ARGUMENT, field: 'patient.treatment_arm' },
  { name: 'CreatePatient: NUL in a race', call: demographics({ race: ['x\u0000'] }), status: Status.INVALID_ARGUMENT, field: 'patient.demographics.race[0]' },
  { name: 'CreatePatient: NUL in an allergy', call: history({ allergies: ['pen\u0000icillin'] }), status: Status.INVALID_ARGUMENT, field: 'patient.medical_history.allergies[0]' },
  { name: 'BatchCreatePatients: NUL in the second entry', call: () => patients.batchCreatePatients({ requests: [{ patient: newPatient(), requestId: '' }, { patient: patientWith((patient) => { patient.treatmentArm = '\u0000'; }), requestId: '' }], requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'requests[1].patient.treatment_arm' },
  { name: 'CreatePatient: 51 characters of emoji in the treatment arm', call: create((patient) => { patient.treatmentArm = '\u{1F600}'.repeat(51); }), status: Status.INVALID_ARGUMENT, field: 'patient.treatment_arm' },
  { name: 'UpdatePatient: NUL in the reason', call: update({ reason: 'typo\u0000' }), status: Status.INVALID_ARGUMENT, field: 'reason' },
  { name: 'UpdatePatient: etag with a leading zero', call: () => patients.updatePatient({ patient: { ...existing, etag: `"0${existing.etag.slice(1)}` }, updateMask: ['treatment_arm'], reason: '', requestId: '' }), status: Status.INVALID_ARGUMENT, field: 'patient.etag' },
  { name: 'ChangePatientStatus: etag with a leading zero', call: () => changeStatus({ etag: `"0${existing.etag.slice(1)}` })(), status: Status.INVALID_ARGUMENT, field: 'etag' },
  { name: 'ListPatients: NUL in the site filter', call: list({ siteId: 'SITE-A\u0000' }), status: Status.INVALID_ARGUMENT, field: 'site_id' },
  { name: 'CreateDocument: content nested 40 deep (past the decoder\'s limit)', call: document({ content: nestedJson(38) }), status: Status.INVALID_ARGUMENT, field: 'request', description: /nests messages deeper than/ },
  { name: 'CreatePatient: a subject number already taken', call: () => patients.createPatient({ patient: { ...newPatient(), subjectNumber: existing.subjectNumber }, requestId: '' }), status: Status.ALREADY_EXISTS, field: 'patient.subject_number' },
  { name: 'ChangePatientStatus: a blank reason', call: changeStatus({ reason: '   ' }), status: Status.INVALID_ARGUMENT, field: 'reason' },
  { name: 'CreateDocument: numbers taking over 2 MiB encoded, within 1 MiB of JSON', call: document({ content: { values: Array(190_000).fill(0) } }), status: Status.INVALID_ARGUMENT, field: 'document.content' },
  { name: 'CreateDocument: NUL in the title', call: document({ title: 'Visit\u0000 1' }), status: Status.INVALID_ARGUMENT, field: 'document.title' },
  { name: 'ListDocumentVersions: page token of another listing', call: () => documents.listDocumentVersions({ documentId: existingDocument.documentId, pageSize: 0, pageToken: firstPageToken }), status: Status.INVALID_ARGUMENT, field: 'page_token' },
];

async function writeCounts(): Promise<Record<string, number>> {
  const { rows } = await admin.query(`
    SELECT (SELECT count(*) FROM patients)::int AS patients, (SELECT count(*) FROM documents)::int AS documents,
           (SELECT count(*) FROM document_versions)::int AS versions, (SELECT count(*) FROM idempotent_requests)::int AS requests,
           (SELECT count(*) FROM audit_events WHERE event_type = 'DATA_CHANGE')::int AS changes`);
  return rows[0];
}

beforeAll(async () => {
  service = await startTestService(patientServiceModule);
  admin = new pg.Client({ connectionString: service.database.url });
  await admin.connect();
  const token = await service.token({ sub: 'fuzzer', roles: ['coordinator'], sites: ['SITE-A'] });
  patients = service.client(patientV1.PatientServiceDefinition, token);
  documents = service.client(documentV1.DocumentServiceDefinition, token);
  await patients.batchCreatePatients({ requests: [newPatient(), newPatient(), newPatient()].map((patient) => ({ patient, requestId: '' })), requestId: '' });
  existing = (await patients.createPatient({ patient: newPatient(), requestId: '' })).patient!;
  existingDocument = (
    await documents.createDocument({
      document: documentV1.Document.fromPartial({ patientId: existing.patientId, documentType: DocumentType.DOCUMENT_TYPE_CRF, title: 'CRF' }),
      requestId: '',
    })
  ).document!;
  firstPageToken = (await patients.listPatients(patientV1.ListPatientsRequest.fromPartial({ pageSize: 1 }))).nextPageToken;
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

describe('malformed requests', () => {
  it(`covers at least 50 cases (${CASES.length})`, () => {
    expect(CASES.length).toBeGreaterThanOrEqual(50);
  });

  it.each(CASES.map((entry) => [entry.name, entry] as const))('%s', async (_name, entry) => {
    const before = await writeCounts();
    const error = await expectStatus(entry.call(), entry.status);
    if (entry.field) {
      expect(error.details).toContain(`${entry.field}:`);
    }
    if (entry.description) {
      expect(error.details).toMatch(entry.description);
    }
    expect(await writeCounts()).toEqual(before);
  });

  it('refuses a JSON key "__proto__" (decoding would drop it) rather than storing the document without it', async () => {
    // The generated encoder cannot write such a key either: encode "__proto_X", then patch the bytes.
    const request = documentV1.CreateDocumentRequest.encode({
      document: documentV1.Document.fromPartial({
        patientId: existing.patientId,
        documentType: DocumentType.DOCUMENT_TYPE_CRF,
        title: 'proto',
        content: { __proto_X: { secret: 'x' }, normal: 1 },
      }),
      requestId: '',
    }).finish();
    const patched = Buffer.from(Buffer.from(request).toString('latin1').replace('__proto_X', '__proto__'), 'latin1');
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${await service.token({ roles: ['coordinator'], sites: ['SITE-A'] })}`);
    const before = await writeCounts();
    const [code] = await sendRawRequests(service.address, { path: '/clinical.patient.v1.DocumentService/CreateDocument', requestStream: false }, [patched], metadata);
    expect(grpc.status[code!]).toBe('INVALID_ARGUMENT');
    expect(await writeCounts()).toEqual(before);
    // The same request with an ordinary key is stored.
    const [stored] = await sendRawRequests(service.address, { path: '/clinical.patient.v1.DocumentService/CreateDocument', requestStream: false }, [request], metadata);
    expect(grpc.status[stored!]).toBe('OK');
  });
});
