import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { agentContextV1, analyticsV1, auditV1, documentV1, patientV1, sessionV1, vitalsV1 } from '@clinical/contracts';
import { eventually } from '@clinical/testing';
import { ClientError, createChannel, createClientFactory, Metadata, Status, type Channel, type CompatServiceDefinition } from 'nice-grpc';
import { errorDetailsClientMiddleware, RichClientError } from 'nice-grpc-error-details';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevStack, exitOf, type DevStack, type StartRun } from './devStack.js';
import { startOtlpReceiver, type AttributeValue, type OtlpReceiver } from './otlpReceiver.js';

/**
 * No PHI in logs, spans or errors, end to end: the four services as `npm
 * start` runs them, exporting traces over OTLP to a receiver inside this test
 * (which decodes every export) and logging at debug level into the output
 * this test captures. Every RPC of every service is driven with planted,
 * recognisable values, through its successful path and through failing ones
 * (bad input, another site's patient, a duplicate, a stale etag, no token),
 * because error paths log and set span statuses too. Then the stack is
 * stopped with Ctrl-C, which flushes the exporters, and everything is
 * searched: decoded span names, attributes, events, links and statuses, the
 * raw export bodies, every log line, and the errors the callers received.
 */

const SITE = 'SITE-PLANT-A';
const OTHER_SITE = 'SITE-PLANT-B';
const PROTOCOL = 'PROT-PLANT';

/**
 * Planted text, each unlike anything a service would print by itself, one per
 * field so that a finding names the field that leaked. Matched anywhere, case
 * ignored (a name upper-cased in a message is still the name).
 */
const TEXT = {
  givenName: 'Zyxwvuta',
  familyName: 'Qorvanthe',
  subjectNumber: 'SUBJ-PLANT-93817',
  batchSubjectNumber: 'SUBJ-PLANT-93818',
  batchSubjectNumber2: 'SUBJ-PLANT-93819',
  invalidSubjectNumber: 'SUBJ PLANT Ulmastrid',
  treatmentArm: 'ARM-PLANT-Velkor',
  race: 'Raceplant-Ombrel',
  ethnicity: 'Ethnoplant-Vashkir',
  conditionCode: 'ICD-PLANT-Q93',
  conditionDescription: 'Condplant-Morvellitis',
  medication: 'Medplant-Threxacil',
  dose: 'Doseplant-seventeen-mg',
  allergy: 'Allergplant-Quibbleseed',
  dateOfBirth: '1931-07-23',
  enrollmentDate: '2023-02-17',
  onsetDate: '1987-03-14',
  medicationStart: '2019-08-26',
  visitDate: '2022-11-29',
  measurementTime: '2022-11-29T07:41:53',
  documentTitle: 'Titleplant-Consent-Brennick',
  documentContent: 'Contentplant-Hexaverine',
  documentMetadata: 'Metaplant-Oberon',
  documentVersionContent: 'Contentplant-Dravolith',
  contentFilter: 'Filterplant-Xantor',
  reason: 'Reasonplant-Ulvetta',
  deviceSerial: 'DEV-PLANT-55123',
  deviceNote: 'Devnoteplant-Pellucid',
  contextData: 'Ctxplant-Vorthal',
  decisionAction: 'Actplant-escalate',
  decisionRationale: 'Rationaleplant-Quenmire',
  decisionDetails: 'Detailplant-Numbrel',
  revokeReason: 'Revokeplant-Sarnith',
} as const;

/**
 * Planted decimals: matched as numbers where a value is typed (span
 * attributes, JSON log fields) and as text bounded by anything but digits and
 * dots elsewhere, so that 187.37 is not found inside 9187.371.
 */
const DECIMALS = {
  heightCm: 187.37,
  weightKg: 93.817,
  temperatureCelsius: 42.7,
  outOfRangeTemperature: 47.9,
} as const;

/**
 * Planted whole numbers. Vital signs are integers between 20 and 300, so any
 * three digits could be them: as text they are matched only as a token of
 * their own (not inside an id such as 7dd287a0 or a port such as 42871, see
 * commit aef752b), with source positions (file.js:287:13) taken out first;
 * as typed values everywhere except the few log fields that describe the
 * process rather than a request (LOG_FIELDS_OF_THE_PROCESS).
 */
const INTEGERS = {
  heartRate: 287,
  systolicBp: 271,
  diastolicBp: 183,
  birthYear: 1931,
  outOfRangeHeartRate: 3017,
  /** measurement_time as epoch milliseconds: the form a Date takes when logged as a number. */
  measurementTimeMs: Date.UTC(2022, 10, 29, 7, 41, 53, 219),
} as const;
/** Planted values that are other forms of one sent (the request carries measurement_time as a timestamp, found as measurementTime). */
const OTHER_FORMS = new Set(['measurementTimeMs']);

/** pino's own fields and the durations services log: numbers about the process, which may equal a planted one by chance. */
const LOG_FIELDS_OF_THE_PROCESS = new Set(['pid', 'time', 'level', 'port', 'durationMs']);

const date = (text: string) => {
  const [year, month, day] = text.split('-').map(Number) as [number, number, number];
  return { year, month, day };
};

let stack: DevStack;
let run: StartRun;
let receiver: OtlpReceiver;
const channels: Channel[] = [];

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  stack = await createDevStack({
    env: {
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      // Batches leave every 100 ms, so that waiting for the calls' spans ends soon after they do.
      OTEL_BSP_SCHEDULE_DELAY: '100',
      LOG_LEVEL: 'debug',
    },
  });
  run = stack.npmStart();
  await stack.untilServing(run);
}, 600_000);

afterAll(async () => {
  for (const channel of channels) {
    channel.close();
  }
  // The test stops the stack itself; this is for a test that failed before it did.
  if (run?.child.pid && run.child.exitCode === null && run.child.signalCode === null) {
    process.kill(-run.child.pid, 'SIGINT');
    await exitOf(run.child);
  }
  stack?.remove();
  await receiver?.close();
}, 120_000);

/** A service definition as ts-proto generates it (clinical.patient.v1.PatientService), and one of its methods. */
type Service = { readonly fullName: string; readonly methods: Record<string, { readonly name: string }> };
const pathOf = (service: Service, method: { readonly name: string }) => `${service.fullName}/${method.name}`;

/** What one call was meant to do and what it did. */
interface CallRecord {
  readonly method: string;
  readonly expected: Status;
  readonly actual: Status;
}

/** The environment variables of a running process (empty once it is gone). */
function environmentOf(pid: number): Record<string, string> {
  try {
    return Object.fromEntries(
      readFileSync(`/proc/${pid}/environ`, 'utf8')
        .split('\0')
        .filter((entry) => entry.includes('='))
        .map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
    );
  } catch {
    return {};
  }
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const TEXT_PATTERNS = Object.entries(TEXT).map(([label, value]) => ({ label, value, pattern: new RegExp(escape(value), 'i') }));
const DECIMAL_PATTERNS = Object.entries(DECIMALS).map(([label, value]) => ({
  label,
  value,
  pattern: new RegExp(`(?<![0-9.])${escape(String(value))}(?![0-9])`),
}));
const INTEGER_PATTERNS = Object.entries(INTEGERS).map(([label, value]) => ({
  label,
  value,
  pattern: new RegExp(`(?<![0-9A-Za-z.])${value}(?![0-9A-Za-z])`),
}));

/** A planted value found somewhere: where, which one, and the text around it. */
interface Finding {
  readonly where: string;
  readonly planted: string;
  readonly excerpt: string;
}

function excerptOf(text: string, index: number): string {
  return text.slice(Math.max(0, index - 80), index + 80);
}

/**
 * The planted values in `text`. Whole numbers are left out of binary text
 * (the raw export bodies), where bytes of ids and timestamps can spell any
 * three digits.
 */
function findInText(where: string, text: string, options: { integers: boolean } = { integers: true }): Finding[] {
  const findings: Finding[] = [];
  for (const { label, pattern } of [...TEXT_PATTERNS, ...DECIMAL_PATTERNS]) {
    const match = pattern.exec(text);
    if (match) {
      findings.push({ where, planted: label, excerpt: excerptOf(text, match.index) });
    }
  }
  if (options.integers) {
    const withoutPositions = text.replace(/\.[cm]?[jt]sx?:\d+(:\d+)?/g, '.js');
    for (const { label, pattern } of INTEGER_PATTERNS) {
      const match = pattern.exec(withoutPositions);
      if (match) {
        findings.push({ where, planted: label, excerpt: excerptOf(withoutPositions, match.index) });
      }
    }
  }
  return findings;
}

function findInNumber(where: string, value: number): Finding[] {
  return [...Object.entries(DECIMALS), ...Object.entries(INTEGERS)]
    .filter(([, planted]) => planted === value)
    .map(([label]) => ({ where, planted: label, excerpt: String(value) }));
}

/** Walks a decoded attribute value or a parsed log line: every key, text and number. */
function findInValue(where: string, value: AttributeValue | unknown, skipNumber: (key: string) => boolean = () => false, key = ''): Finding[] {
  if (typeof value === 'string') {
    return findInText(where, value);
  }
  if (typeof value === 'number') {
    return skipNumber(key) ? [] : findInNumber(where, value);
  }
  if (Array.isArray(value)) {
    return value.flatMap((item, index) => findInValue(`${where}[${index}]`, item, skipNumber, key));
  }
  if (value instanceof Uint8Array) {
    return findInText(where, Buffer.from(value).toString('latin1'), { integers: false });
  }
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([name, item]) => [
      ...findInText(`${where} key`, name),
      ...findInValue(`${where}.${name}`, item, skipNumber, name),
    ]);
  }
  return [];
}

/** A log line's fields; undefined for output that is not a JSON log line (npm start's own, the bundler's). */
function jsonOf(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) {
    return undefined;
  }
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** The requests as a service sees them, google.type.Date as the YYYY-MM-DD text the services write. */
function requestText(requests: unknown[]): string {
  return JSON.stringify(requests, (_key, value: unknown) => {
    if (value && typeof value === 'object' && 'year' in value && 'month' in value && 'day' in value && Object.keys(value).length === 3) {
      const { year, month, day } = value as { year: number; month: number; day: number };
      return `${year}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`;
    }
    return value;
  });
}

describe('no PHI in logs, spans or errors', () => {
  it('drives every RPC of every service with planted values, and finds none of them in the exported spans, the logs or the errors', async () => {
    const [patientPort, vitalsPort, auditPort, analyticsPort] = stack.ports.services as [number, number, number, number];
    const [token, otherSiteToken, adminToken, departingToken, departingToken2] = await Promise.all([
      stack.npmRun('token', ['--roles', 'coordinator,auditor,agent', '--sites', SITE, '--sub', 'plant-coordinator']),
      stack.npmRun('token', ['--roles', 'coordinator,agent', '--sites', OTHER_SITE, '--sub', 'plant-other-site']),
      stack.npmRun('token', ['--roles', 'admin', '--sites', '*', '--sub', 'plant-admin']),
      stack.npmRun('token', ['--roles', 'monitor', '--sites', SITE, '--sub', 'plant-departing']),
      stack.npmRun('token', ['--roles', 'monitor', '--sites', SITE, '--sub', 'plant-departing']),
    ]);
    const sidOf = (jwt: string) => (JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as { sid: string }).sid;

    const factory = createClientFactory().use(errorDetailsClientMiddleware);
    const clientOf = <Definition extends CompatServiceDefinition>(definition: Definition, port: number, bearer?: string) => {
      const channel = createChannel(`127.0.0.1:${port}`);
      channels.push(channel);
      return factory.create(definition, channel, bearer ? { '*': { metadata: Metadata({ authorization: `Bearer ${bearer}` }) } } : {});
    };
    const as = (bearer: string | undefined) => ({
      patients: clientOf(patientV1.PatientServiceDefinition, patientPort, bearer),
      documents: clientOf(documentV1.DocumentServiceDefinition, patientPort, bearer),
      vitals: clientOf(vitalsV1.VitalsServiceDefinition, vitalsPort, bearer),
      audit: clientOf(auditV1.AuditServiceDefinition, auditPort, bearer),
      agents: clientOf(agentContextV1.AgentContextServiceDefinition, auditPort, bearer),
      sessions: clientOf(sessionV1.SessionServiceDefinition, auditPort, bearer),
      analytics: clientOf(analyticsV1.AnalyticsServiceDefinition, analyticsPort, bearer),
    });
    const caller = as(token);
    const otherSite = as(otherSiteToken);
    const admin = as(adminToken);
    const anonymous = as(undefined);

    const calls: CallRecord[] = [];
    const requests: unknown[] = [];
    /** What the callers were told when a call failed: status text and google.rpc details, searched like the logs. */
    const errors: string[] = [];
    /** One call: its outcome is recorded (and compared with `expected` at the end); a failure's message and details kept. */
    async function call<T>(service: Service, method: { name: string }, expected: Status, request: unknown, send: () => Promise<T>): Promise<T | undefined> {
      const path = pathOf(service, method);
      requests.push(request);
      try {
        const response = await send();
        calls.push({ method: path, expected, actual: Status.OK });
        return response;
      } catch (error) {
        if (!(error instanceof ClientError)) {
          throw error;
        }
        calls.push({ method: path, expected, actual: error.code });
        errors.push(`${path} ${Status[error.code]}: ${error.details} ${error instanceof RichClientError ? JSON.stringify(error.extra) : ''}`);
        return undefined;
      }
    }

    // ---- PatientService ----
    const { PatientServiceDefinition: P } = patientV1;
    const demographics = patientV1.Demographics.fromPartial({
      sex: patientV1.Sex.SEX_FEMALE,
      birthYear: INTEGERS.birthYear,
      race: [TEXT.race],
      ethnicity: TEXT.ethnicity,
      heightCm: DECIMALS.heightCm,
      weightKg: DECIMALS.weightKg,
    });
    const medicalHistory = patientV1.MedicalHistory.fromPartial({
      conditions: [{ code: TEXT.conditionCode, description: `${TEXT.conditionDescription} of ${TEXT.givenName} ${TEXT.familyName}`, onsetDate: date(TEXT.onsetDate), ongoing: true }],
      medications: [{ name: TEXT.medication, dose: TEXT.dose, startDate: date(TEXT.medicationStart) }],
      allergies: [TEXT.allergy],
    });
    const newPatient = (subjectNumber: string, siteId = SITE) =>
      patientV1.Patient.fromPartial({
        subjectNumber,
        siteId,
        protocolId: PROTOCOL,
        enrollmentDate: date(TEXT.enrollmentDate),
        treatmentArm: TEXT.treatmentArm,
        demographics,
        medicalHistory,
      });
    const createRequest = { patient: newPatient(TEXT.subjectNumber), requestId: randomUUID() };
    const created = await call(P, P.methods.createPatient, Status.OK, createRequest, () => caller.patients.createPatient(createRequest));
    const patient = created!.patient!;
    // The same request again: the idempotent replay, answered from what the first call stored.
    await call(P, P.methods.createPatient, Status.OK, createRequest, () => caller.patients.createPatient(createRequest));
    const duplicate = { patient: newPatient(TEXT.subjectNumber), requestId: randomUUID() };
    await call(P, P.methods.createPatient, Status.ALREADY_EXISTS, duplicate, () => caller.patients.createPatient(duplicate));
    const invalid = { patient: newPatient(TEXT.invalidSubjectNumber) };
    await call(P, P.methods.createPatient, Status.INVALID_ARGUMENT, invalid, () => caller.patients.createPatient(invalid));
    const notTheirSite = { patient: newPatient(`${TEXT.subjectNumber}-B`) };
    await call(P, P.methods.createPatient, Status.PERMISSION_DENIED, notTheirSite, () => otherSite.patients.createPatient(notTheirSite));
    await call(P, P.methods.createPatient, Status.UNAUTHENTICATED, createRequest, () => anonymous.patients.createPatient(createRequest));

    const batch = {
      requests: [{ patient: newPatient(TEXT.batchSubjectNumber) }, { patient: newPatient(TEXT.batchSubjectNumber2) }],
      requestId: randomUUID(),
    };
    const batchCreated = await call(P, P.methods.batchCreatePatients, Status.OK, batch, () => caller.patients.batchCreatePatients(batch));
    const withdrawing = batchCreated!.patients[0]!;
    const batchDuplicate = { requests: [{ patient: newPatient(`${TEXT.batchSubjectNumber}-C`) }, { patient: newPatient(TEXT.subjectNumber) }] };
    await call(P, P.methods.batchCreatePatients, Status.ALREADY_EXISTS, batchDuplicate, () => caller.patients.batchCreatePatients(batchDuplicate));

    await call(P, P.methods.getPatient, Status.OK, {}, () => caller.patients.getPatient({ patientId: patient.patientId }));
    await call(P, P.methods.getPatient, Status.NOT_FOUND, {}, () => otherSite.patients.getPatient({ patientId: patient.patientId }));
    const listFilter = { siteId: SITE, protocolId: PROTOCOL, enrolledOnOrAfter: date(TEXT.enrollmentDate), enrolledOnOrBefore: date(TEXT.enrollmentDate) };
    await call(P, P.methods.listPatients, Status.OK, listFilter, () => caller.patients.listPatients(listFilter));
    const badListFilter = { ...listFilter, enrolledOnOrAfter: { year: 2023, month: 2, day: 31 } };
    await call(P, P.methods.listPatients, Status.INVALID_ARGUMENT, badListFilter, () => caller.patients.listPatients(badListFilter));

    const update = {
      patient: { ...patient, demographics, medicalHistory, treatmentArm: `${TEXT.treatmentArm}-2` },
      updateMask: ['demographics', 'medical_history', 'treatment_arm'],
      reason: `${TEXT.reason}: ${TEXT.givenName} corrected history`,
      requestId: randomUUID(),
    };
    const updated = await call(P, P.methods.updatePatient, Status.OK, update, () => caller.patients.updatePatient(update));
    expect(updated?.patient?.etag).not.toBe(patient.etag);
    const staleUpdate = { ...update, requestId: randomUUID() };
    await call(P, P.methods.updatePatient, Status.ABORTED, staleUpdate, () => caller.patients.updatePatient(staleUpdate));
    const immutableUpdate = { ...update, patient: { ...updated!.patient!, subjectNumber: TEXT.batchSubjectNumber }, updateMask: ['subject_number'], requestId: randomUUID() };
    await call(P, P.methods.updatePatient, Status.INVALID_ARGUMENT, immutableUpdate, () => caller.patients.updatePatient(immutableUpdate));

    const withdraw = {
      patientId: withdrawing.patientId,
      status: patientV1.PatientStatus.PATIENT_STATUS_WITHDRAWN,
      reason: `${TEXT.reason}: ${TEXT.familyName} moved away`,
      etag: withdrawing.etag,
    };
    const withdrawn = await call(P, P.methods.changePatientStatus, Status.OK, withdraw, () => caller.patients.changePatientStatus(withdraw));
    // WITHDRAWN is final: enrolling again, at the current etag, is refused.
    const reEnroll = { ...withdraw, status: patientV1.PatientStatus.PATIENT_STATUS_ENROLLED, etag: withdrawn!.patient!.etag };
    await call(P, P.methods.changePatientStatus, Status.FAILED_PRECONDITION, reEnroll, () => caller.patients.changePatientStatus(reEnroll));
    await call(P, P.methods.changePatientStatus, Status.ABORTED, withdraw, () => caller.patients.changePatientStatus(withdraw));

    // ---- DocumentService ----
    const { DocumentServiceDefinition: D } = documentV1;
    const content = {
      patientName: { given: TEXT.givenName, family: TEXT.familyName },
      dateOfBirth: TEXT.dateOfBirth,
      findings: `${TEXT.documentContent} noted in ${TEXT.givenName}`,
      heightCm: DECIMALS.heightCm,
      heartRate: INTEGERS.heartRate,
      diagnosis: TEXT.contentFilter,
    };
    const newDocument = {
      document: documentV1.Document.fromPartial({
        patientId: patient.patientId,
        documentType: documentV1.DocumentType.DOCUMENT_TYPE_CONSENT,
        title: `${TEXT.documentTitle} ${TEXT.familyName}`,
        content,
        metadata: { source: TEXT.documentMetadata, subject: TEXT.subjectNumber },
      }),
      requestId: randomUUID(),
    };
    const document = (await call(D, D.methods.createDocument, Status.OK, newDocument, () => caller.documents.createDocument(newDocument)))!.document!;
    await call(D, D.methods.createDocument, Status.NOT_FOUND, newDocument, () => otherSite.documents.createDocument({ ...newDocument, requestId: randomUUID() }));
    const untitled = { document: { ...newDocument.document, title: '' } };
    await call(D, D.methods.createDocument, Status.INVALID_ARGUMENT, untitled, () => caller.documents.createDocument(untitled));
    await call(D, D.methods.getDocument, Status.OK, {}, () => caller.documents.getDocument({ documentId: document.documentId }));
    await call(D, D.methods.getDocument, Status.NOT_FOUND, {}, () => caller.documents.getDocument({ documentId: document.documentId, version: 9 }));
    const listDocuments = { patientId: patient.patientId, contentFilter: { diagnosis: TEXT.contentFilter }, metadataFilter: { source: TEXT.documentMetadata } };
    await call(D, D.methods.listDocuments, Status.OK, listDocuments, () => caller.documents.listDocuments(listDocuments));
    await call(D, D.methods.listDocuments, Status.NOT_FOUND, listDocuments, () => otherSite.documents.listDocuments(listDocuments));
    const newVersion = {
      documentId: document.documentId,
      expectedVersion: 1,
      title: `${TEXT.documentTitle} ${TEXT.givenName} v2`,
      content: { ...content, findings: TEXT.documentVersionContent },
      metadata: { source: TEXT.documentMetadata },
      reason: `${TEXT.reason}: ${TEXT.givenName} re-consented`,
      requestId: randomUUID(),
    };
    await call(D, D.methods.createDocumentVersion, Status.OK, newVersion, () => caller.documents.createDocumentVersion(newVersion));
    const staleVersion = { ...newVersion, requestId: randomUUID() };
    await call(D, D.methods.createDocumentVersion, Status.ABORTED, staleVersion, () => caller.documents.createDocumentVersion(staleVersion));
    await call(D, D.methods.listDocumentVersions, Status.OK, {}, () => caller.documents.listDocumentVersions({ documentId: document.documentId }));
    await call(D, D.methods.listDocumentVersions, Status.NOT_FOUND, {}, () => otherSite.documents.listDocumentVersions({ documentId: document.documentId }));

    // ---- VitalsService ----
    const { VitalsServiceDefinition: V } = vitalsV1;
    const reading = (offsetSeconds: number, overrides: Partial<vitalsV1.VitalSigns> = {}) =>
      vitalsV1.VitalSigns.fromPartial({
        patientId: patient.patientId,
        visitDate: date(TEXT.visitDate),
        measurementTime: new Date(INTEGERS.measurementTimeMs + offsetSeconds * 1_000),
        systolicBp: INTEGERS.systolicBp,
        diastolicBp: INTEGERS.diastolicBp,
        heartRate: INTEGERS.heartRate,
        temperatureCelsius: DECIMALS.temperatureCelsius,
        deviceData: { serial: TEXT.deviceSerial, note: `${TEXT.deviceNote} ${TEXT.givenName}` },
        ...overrides,
      });
    const outOfRange = { heartRate: INTEGERS.outOfRangeHeartRate, temperatureCelsius: DECIMALS.outOfRangeTemperature };
    const record = { reading: reading(0), requestId: randomUUID() };
    await call(V, V.methods.recordVitals, Status.OK, record, () => caller.vitals.recordVitals(record));
    const recordInvalid = { reading: reading(1, outOfRange) };
    await call(V, V.methods.recordVitals, Status.INVALID_ARGUMENT, recordInvalid, () => caller.vitals.recordVitals(recordInvalid));
    const recordOtherSite = { reading: reading(2) };
    await call(V, V.methods.recordVitals, Status.NOT_FOUND, recordOtherSite, () => otherSite.vitals.recordVitals(recordOtherSite));
    const recordWithdrawn = { reading: reading(3, { patientId: withdrawing.patientId }) };
    await call(V, V.methods.recordVitals, Status.FAILED_PRECONDITION, recordWithdrawn, () => caller.vitals.recordVitals(recordWithdrawn));
    const batchRecord = { readings: [reading(10), reading(11)], requestId: randomUUID() };
    await call(V, V.methods.batchRecordVitals, Status.OK, batchRecord, () => caller.vitals.batchRecordVitals(batchRecord));
    const batchInvalid = { readings: [reading(12), reading(13, outOfRange)] };
    await call(V, V.methods.batchRecordVitals, Status.INVALID_ARGUMENT, batchInvalid, () => caller.vitals.batchRecordVitals(batchInvalid));
    // A request id used again for other readings: refused, the first readings are not replayed.
    const reusedRequestId = { readings: [reading(14)], requestId: batchRecord.requestId };
    await call(V, V.methods.batchRecordVitals, Status.INVALID_ARGUMENT, reusedRequestId, () => caller.vitals.batchRecordVitals(reusedRequestId));
    const streamed = [{ readings: [reading(20), reading(21)] }, { readings: [reading(22)] }];
    await call(V, V.methods.streamVitals, Status.OK, streamed, () =>
      caller.vitals.streamVitals(
        (async function* () {
          yield* streamed;
        })(),
      ),
    );
    const streamedInvalid = [{ readings: [reading(30)] }, { readings: [reading(31, outOfRange)] }];
    await call(V, V.methods.streamVitals, Status.INVALID_ARGUMENT, streamedInvalid, () =>
      caller.vitals.streamVitals(
        (async function* () {
          yield* streamedInvalid;
        })(),
      ),
    );
    const streamedOtherSite = [{ readings: [reading(40)] }];
    await call(V, V.methods.streamVitals, Status.NOT_FOUND, streamedOtherSite, () =>
      otherSite.vitals.streamVitals(
        (async function* () {
          yield* streamedOtherSite;
        })(),
      ),
    );
    const range = { patientId: patient.patientId, startTime: new Date(INTEGERS.measurementTimeMs - 60_000), endTime: new Date(INTEGERS.measurementTimeMs + 60_000) };
    await call(V, V.methods.listVitals, Status.OK, range, () => caller.vitals.listVitals(range));
    await call(V, V.methods.listVitals, Status.INVALID_ARGUMENT, range, () => caller.vitals.listVitals({ ...range, startTime: range.endTime, endTime: range.startTime }));
    await call(V, V.methods.getLatestVitals, Status.OK, {}, () => caller.vitals.getLatestVitals({ patientId: patient.patientId }));
    await call(V, V.methods.getLatestVitals, Status.NOT_FOUND, {}, () => otherSite.vitals.getLatestVitals({ patientId: patient.patientId }));
    await call(V, V.methods.summarizeVitals, Status.OK, range, () => caller.vitals.summarizeVitals(range));
    await call(V, V.methods.summarizeVitals, Status.NOT_FOUND, range, () => otherSite.vitals.summarizeVitals(range));

    // ---- AgentContextService ----
    const { AgentContextServiceDefinition: A } = agentContextV1;
    const agentId = `plant-agent-${randomUUID().slice(0, 8)}`;
    const contextData = { patient: { name: `${TEXT.givenName} ${TEXT.familyName}`, subject: TEXT.subjectNumber, dateOfBirth: TEXT.dateOfBirth }, notes: TEXT.contextData, heartRate: INTEGERS.heartRate };
    const upsert = { agentContext: { agentId, contextType: 'triage', contextData }, reason: TEXT.reason, requestId: randomUUID() };
    const context = (await call(A, A.methods.upsertAgentContext, Status.OK, upsert, () => caller.agents.upsertAgentContext(upsert)))!.agentContext!;
    const replace = { agentContext: { agentId, contextType: 'triage', contextData: { ...contextData, notes: `${TEXT.contextData}-2` }, etag: context.etag }, reason: TEXT.reason };
    await call(A, A.methods.upsertAgentContext, Status.OK, replace, () => caller.agents.upsertAgentContext(replace));
    await call(A, A.methods.upsertAgentContext, Status.ABORTED, replace, () => caller.agents.upsertAgentContext(replace));
    const badUpsert = { agentContext: { agentId: `${TEXT.givenName} ${TEXT.familyName}`, contextType: 'triage', contextData } };
    await call(A, A.methods.upsertAgentContext, Status.INVALID_ARGUMENT, badUpsert, () => caller.agents.upsertAgentContext(badUpsert));
    await call(A, A.methods.getAgentContext, Status.OK, {}, () => caller.agents.getAgentContext({ agentId }));
    await call(A, A.methods.getAgentContext, Status.NOT_FOUND, {}, () => caller.agents.getAgentContext({ agentId: `${agentId}-missing` }));
    await call(A, A.methods.listAgentContexts, Status.OK, {}, () => caller.agents.listAgentContexts({ contextType: 'triage' }));
    const forgedContexts = { contextType: 'triage', pageToken: TEXT.contextData };
    await call(A, A.methods.listAgentContexts, Status.INVALID_ARGUMENT, forgedContexts, () => caller.agents.listAgentContexts(forgedContexts));
    const decision = {
      agentId,
      decision: {
        action: `${TEXT.decisionAction} ${TEXT.givenName}`,
        rationale: `${TEXT.decisionRationale}: ${TEXT.familyName}, heart rate ${INTEGERS.heartRate}, temperature ${DECIMALS.temperatureCelsius}`,
        confidence: 0.5,
        patientId: patient.patientId,
        details: { subject: TEXT.subjectNumber, note: TEXT.decisionDetails },
      },
      requestId: randomUUID(),
    };
    await call(A, A.methods.appendAgentDecision, Status.OK, decision, () => caller.agents.appendAgentDecision(decision));
    const overconfident = { ...decision, decision: { ...decision.decision, confidence: 1.5 }, requestId: randomUUID() };
    await call(A, A.methods.appendAgentDecision, Status.INVALID_ARGUMENT, overconfident, () => caller.agents.appendAgentDecision(overconfident));
    const otherSiteDecision = { ...decision, requestId: randomUUID() };
    await call(A, A.methods.appendAgentDecision, Status.NOT_FOUND, otherSiteDecision, () => otherSite.agents.appendAgentDecision(otherSiteDecision));

    // ---- AuditService: the trail now holds the planted values, as it must; reading it must not log them. ----
    const { AuditServiceDefinition: T } = auditV1;
    const events = await call(T, T.methods.listAuditEvents, Status.OK, {}, () => caller.audit.listAuditEvents({ patientId: patient.patientId, pageSize: 50 }));
    expect(events?.events.length, 'audit events of the planted patient').toBeGreaterThan(0);
    // A page token that is not one: planted text where the service expects its own token.
    const forgedPage = { patientId: patient.patientId, pageToken: `${TEXT.givenName}-${TEXT.subjectNumber}` };
    await call(T, T.methods.listAuditEvents, Status.INVALID_ARGUMENT, forgedPage, () => caller.audit.listAuditEvents(forgedPage));
    await call(T, T.methods.getAuditEvent, Status.OK, {}, () => caller.audit.getAuditEvent({ eventId: events!.events[0]!.eventId }));
    await call(T, T.methods.getAuditEvent, Status.NOT_FOUND, {}, () => caller.audit.getAuditEvent({ eventId: randomUUID() }));
    await call(T, T.methods.verifyAuditTrail, Status.OK, {}, () => admin.audit.verifyAuditTrail({}));
    // Verifying needs every site: an auditor of one site is refused.
    await call(T, T.methods.verifyAuditTrail, Status.PERMISSION_DENIED, {}, () => caller.audit.verifyAuditTrail({}));
    const purge = { validateOnly: true, reason: TEXT.reason, requestId: randomUUID() };
    await call(T, T.methods.purgeExpiredAuditEvents, Status.OK, purge, () => admin.audit.purgeExpiredAuditEvents(purge));
    await call(T, T.methods.purgeExpiredAuditEvents, Status.PERMISSION_DENIED, purge, () => caller.audit.purgeExpiredAuditEvents(purge));

    // ---- AnalyticsService ----
    const { AnalyticsServiceDefinition: N } = analyticsV1;
    await call(N, N.methods.refreshAnalytics, Status.OK, {}, () => admin.analytics.refreshAnalytics({ requestId: randomUUID() }));
    await call(N, N.methods.getSiteAnalytics, Status.OK, {}, () => caller.analytics.getSiteAnalytics({ siteId: SITE, protocolId: PROTOCOL }));
    await call(N, N.methods.getSiteAnalytics, Status.NOT_FOUND, {}, () => otherSite.analytics.getSiteAnalytics({ siteId: SITE, protocolId: PROTOCOL }));
    await call(N, N.methods.listSiteAnalytics, Status.OK, {}, () => caller.analytics.listSiteAnalytics({ siteId: SITE }));
    const forgedSites = { siteId: SITE, pageToken: TEXT.familyName };
    await call(N, N.methods.listSiteAnalytics, Status.INVALID_ARGUMENT, forgedSites, () => caller.analytics.listSiteAnalytics(forgedSites));
    await call(N, N.methods.getAnalyticsFreshness, Status.OK, {}, () => caller.analytics.getAnalyticsFreshness({}));
    await call(N, N.methods.getAnalyticsFreshness, Status.UNAUTHENTICATED, {}, () => anonymous.analytics.getAnalyticsFreshness({}));
    await call(N, N.methods.refreshAnalytics, Status.PERMISSION_DENIED, {}, () => caller.analytics.refreshAnalytics({}));

    // ---- SessionService ----
    const { SessionServiceDefinition: S } = sessionV1;
    await call(S, S.methods.listSessions, Status.OK, {}, () => admin.sessions.listSessions({ user: 'plant-departing' }));
    await call(S, S.methods.listSessions, Status.PERMISSION_DENIED, {}, () => caller.sessions.listSessions({ user: 'plant-departing' }));
    const revoke = { sessionId: sidOf(departingToken), reason: `${TEXT.revokeReason}: complaint by ${TEXT.givenName} ${TEXT.familyName}` };
    await call(S, S.methods.revokeSession, Status.OK, revoke, () => admin.sessions.revokeSession(revoke));
    await call(S, S.methods.revokeSession, Status.NOT_FOUND, revoke, () => admin.sessions.revokeSession({ ...revoke, sessionId: randomUUID() }));
    await call(S, S.methods.revokeSession, Status.PERMISSION_DENIED, revoke, () => caller.sessions.revokeSession({ ...revoke, sessionId: sidOf(departingToken2) }));
    const revokeUser = { user: 'plant-departing', reason: `${TEXT.revokeReason}: ${TEXT.subjectNumber}` };
    await call(S, S.methods.revokeUserSessions, Status.OK, revokeUser, () => admin.sessions.revokeUserSessions(revokeUser));
    await call(S, S.methods.revokeUserSessions, Status.INVALID_ARGUMENT, {}, () => admin.sessions.revokeUserSessions({ user: 'plant-departing', reason: '' }));

    // Every call did what it was meant to: the successful paths ran, and each failing one failed the way intended.
    expect(calls.filter(({ expected, actual }) => expected !== actual).map(({ method, expected, actual }) => `${method}: expected ${Status[expected]}, got ${Status[actual]}`)).toEqual([]);
    const definitions = [
      patientV1.PatientServiceDefinition,
      documentV1.DocumentServiceDefinition,
      vitalsV1.VitalsServiceDefinition,
      auditV1.AuditServiceDefinition,
      agentContextV1.AgentContextServiceDefinition,
      analyticsV1.AnalyticsServiceDefinition,
      sessionV1.SessionServiceDefinition,
    ];
    const everyMethod = definitions.flatMap((definition: Service) => Object.values(definition.methods).map((method) => pathOf(definition, method)));
    const succeeded = new Set(calls.filter(({ actual }) => actual === Status.OK).map(({ method }) => method));
    const failed = new Set(calls.filter(({ actual }) => actual !== Status.OK).map(({ method }) => method));
    expect(everyMethod.filter((path) => !succeeded.has(path)), 'methods never called successfully').toEqual([]);
    expect(everyMethod.filter((path) => !failed.has(path)), 'methods never called on a failing path').toEqual([]);
    // Every planted value was sent in some request, as a service reads it (the search below would find it there).
    const sent = new Set(findInText('requests', requestText(requests)).map(({ planted }) => planted));
    expect([...Object.keys(TEXT), ...Object.keys(DECIMALS), ...Object.keys(INTEGERS)].filter((label) => !sent.has(label) && !OTHER_FORMS.has(label))).toEqual([]);

    // The services ran with debug logging, as configured for this test. (No code path logs at debug
    // today: what this proves is that any that did would have printed into the output searched below.)
    const serviceNames = ['patient-svc', 'vitals-svc', 'audit-svc', 'analytics-svc'];
    const levels = Object.fromEntries(
      stack
        .processes()
        .map(({ pid }) => environmentOf(pid))
        .filter((environment) => environment.SERVICE_NAME)
        .map((environment) => [environment.SERVICE_NAME, environment.LOG_LEVEL]),
    );
    expect(levels).toEqual(Object.fromEntries(serviceNames.map((name) => [name, 'debug'])));

    // Every call's server span has reached the receiver, from the service that served it.
    const serviceOf = (path: string) =>
      path.includes('.patient.v1.') ? 'patient-svc' : path.includes('.vitals.v1.') ? 'vitals-svc' : path.includes('.audit.v1.') ? 'audit-svc' : 'analytics-svc';
    const SERVER = 2;
    await eventually(
      async () => {
        const missing = everyMethod.filter(
          (path) => !receiver.spans.some((span) => span.kind === SERVER && span.name.endsWith(path) && span.serviceName === serviceOf(path)),
        );
        return missing.length === 0 ? true : undefined;
      },
      120_000,
      'the server span of every method',
    );

    // Ctrl-C: each service stops, and its telemetry shutdown flushes what is still batched.
    process.kill(-run.child.pid!, 'SIGINT');
    await exitOf(run.child);
    await stack.expectNothingLeft();
    const output = run.output();

    // Not vacuous: spans from every service arrived and decoded, with SQL and Redis among them; every service's log lines were captured, to its last.
    expect(receiver.failures).toEqual([]);
    expect(new Set(receiver.spans.map(({ serviceName }) => serviceName))).toEqual(new Set(serviceNames));
    expect(receiver.spans.some((span) => 'db.statement' in span.attributes || 'db.query.text' in span.attributes), 'SQL spans').toBe(true);
    expect(receiver.spans.some((span) => span.attributes['db.system'] === 'redis' || span.attributes['db.system.name'] === 'redis'), 'Redis spans').toBe(true);
    expect(receiver.spans.some((span) => span.status.code === 2 && span.status.message !== ''), 'spans of failed calls, with their status message').toBe(true);
    const logLines = output
      .split('\n')
      .map(jsonOf)
      .filter((line): line is Record<string, unknown> => line !== undefined);
    for (const name of serviceNames) {
      const messages = logLines.filter((line) => line.name === name).map((line) => line.msg);
      expect(messages, name).toContain('serving');
      expect(messages, name).toContain('stopped');
    }
    expect(errors.length).toBeGreaterThan(0);

    // The search: decoded spans, raw export bodies, every line of output, every error a caller received.
    const findings = [
      ...receiver.spans.flatMap((span) => [
        ...findInText(`span ${span.serviceName} ${span.name}: name`, span.name),
        ...findInValue(`span ${span.serviceName} ${span.name}: attributes`, span.attributes),
        ...findInValue(`span ${span.serviceName} ${span.name}: resource`, span.resource),
        ...span.events.flatMap((event) => [...findInText(`span ${span.name}: event`, event.name), ...findInValue(`span ${span.name}: event ${event.name}`, event.attributes)]),
        ...span.links.flatMap((link) => findInValue(`span ${span.name}: link`, link.attributes)),
        ...findInText(`span ${span.serviceName} ${span.name}: status`, span.status.message),
      ]),
      ...receiver.bodies.flatMap((body, index) => findInText(`export body ${index}`, body.toString('latin1'), { integers: false })),
      ...output.split('\n').flatMap((line, index) => {
        const parsed = jsonOf(line);
        return parsed === undefined
          ? findInText(`output line ${index + 1}`, line)
          : findInValue(`output line ${index + 1}`, parsed, (key) => LOG_FIELDS_OF_THE_PROCESS.has(key));
      }),
      ...errors.flatMap((error, index) => findInText(`error ${index}`, error)),
      // The development PostgreSQL's own log, which npm start keeps beside its data.
      ...readFileSync(join(stack.dataDir, 'postgres.log'), 'utf8')
        .split('\n')
        .flatMap((line, index) => findInText(`postgres.log line ${index + 1}`, line)),
    ];
    expect(findings).toEqual([]);
  }, 600_000);
});
