/**
 * The demo data of `npm run seed`, every value derived from the seed and the
 * subject number: the same options always make the same sites, patients,
 * documents and readings, and the same request ids, so a re-run finds what
 * an earlier one made instead of making it again.
 */
import { createHash } from 'node:crypto';
import { documentV1, patientV1, vitalsV1 } from '@clinical/contracts';

/** Protocol of every demo patient. */
export const DEMO_PROTOCOL = 'DEMO-001';
/** Marks seeded documents in their metadata (`{"demo_seed": {"index": 0}}`) and a seeded series' last reading in its device data. */
export const DEMO_MARK = 'demo_seed';

/** Namespace of the seeder's name-based request ids. */
const NAMESPACE = Buffer.from('5c0b1c4e6a7d4f0e9b1d2a3c4e5f6a7b', 'hex');

/** A name-based UUID (RFC 9562 version 5: SHA-1 of the namespace and the name). */
export function uuidV5(name: string): string {
  const bytes = createHash('sha1').update(NAMESPACE).update(name).digest().subarray(0, 16);
  bytes.writeUInt8((bytes.readUInt8(6) & 0x0f) | 0x50, 6);
  bytes.writeUInt8((bytes.readUInt8(8) & 0x3f) | 0x80, 8);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A 32-bit hash of a string (FNV-1a), to seed the generators. */
function hash32(text: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < text.length; index += 1) {
    hash = Math.imul(hash ^ text.charCodeAt(index), 0x01000193);
  }
  return hash >>> 0;
}

/** mulberry32: a small, fast, deterministic generator of numbers in [0, 1). */
export function randomOf(seed: number, salt: string): () => number {
  let state = hash32(`${seed}:${salt}`);
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Roughly normal (mean 0, deviation 1): the sum of three uniforms, cheap and bounded. */
function gaussian(random: () => number): number {
  return (random() + random() + random() - 1.5) * 2;
}

const pick = <T>(random: () => number, items: readonly [T, ...T[]]): T => items[Math.floor(random() * items.length)] ?? items[0];
const clamp = (value: number, min: number, max: number) => Math.min(max, Math.max(min, value));

/** `SITE-001` for the first site. */
export function siteIdOf(siteIndex: number): string {
  return `SITE-${String(siteIndex + 1).padStart(3, '0')}`;
}

/** `DEMO-S001-0001` for the first patient of the first site. */
export function subjectNumberOf(siteIndex: number, patientIndex: number): string {
  return `DEMO-S${String(siteIndex + 1).padStart(3, '0')}-${String(patientIndex + 1).padStart(4, '0')}`;
}

/** How many of `patients` each of `sites` gets: as even as can be, the first sites one more. */
export function patientsPerSite(sites: number, patients: number): number[] {
  return Array.from({ length: sites }, (_, index) => Math.floor(patients / sites) + (index < patients % sites ? 1 : 0));
}

const DAY_MS = 86_400_000;
/** Readings end at most this far back from 2025-01-01T00:00Z, per patient (so patients do not all share one window). */
const READINGS_END_MS = Date.UTC(2025, 0, 1);
const READINGS_END_SPREAD_DAYS = 180;
/** A reading every 15 minutes, closer when that would start before the earliest time the service accepts. */
const READING_INTERVAL_MS = 15 * 60_000;
const EARLIEST_READING_MS = Date.UTC(1990, 0, 2);

/** The device data of a patient's last seeded reading: where it came from and how many readings its series has. */
export function demoSeriesMark(count: number): Record<string, unknown> {
  return { device: 'demo bedside monitor', [DEMO_MARK]: { readings: count } };
}

/** The size of the seeded series a reading closes (from its device data), or undefined when it is not a seeded series' last reading. */
export function demoSeriesCountOf(reading: vitalsV1.VitalSigns): number | undefined {
  const mark = reading.deviceData?.[DEMO_MARK] as { readings?: unknown } | undefined;
  return typeof mark?.readings === 'number' ? mark.readings : undefined;
}

/** When a patient's readings are taken: `count` readings, the last at `lastMs`, `intervalMs` apart. */
export interface ReadingTimes {
  readonly firstMs: number;
  readonly lastMs: number;
  readonly intervalMs: number;
  readonly count: number;
}

/** Depends on the subject number and the count only, not on the seed: a re-run with another seed finds the same readings. */
export function readingTimesOf(subjectNumber: string, count: number): ReadingTimes {
  const lastMs = READINGS_END_MS - (hash32(subjectNumber) % READINGS_END_SPREAD_DAYS) * DAY_MS;
  const intervalMs = count <= 1 ? READING_INTERVAL_MS : Math.max(1, Math.min(READING_INTERVAL_MS, Math.floor((lastMs - EARLIEST_READING_MS) / (count - 1))));
  return { firstMs: lastMs - Math.max(0, count - 1) * intervalMs, lastMs, intervalMs, count };
}

function civilDate(ms: number): { year: number; month: number; day: number } {
  const date = new Date(ms);
  return { year: date.getUTCFullYear(), month: date.getUTCMonth() + 1, day: date.getUTCDate() };
}

const CONDITIONS = [
  { code: 'I10', description: 'Essential (primary) hypertension' },
  { code: 'E11.9', description: 'Type 2 diabetes mellitus without complications' },
  { code: 'E78.5', description: 'Hyperlipidaemia, unspecified' },
  { code: 'J45.909', description: 'Asthma, uncomplicated' },
  { code: 'M06.9', description: 'Rheumatoid arthritis, unspecified' },
] as const;
const MEDICATIONS = [
  { name: 'Lisinopril', dose: '10 mg once daily' },
  { name: 'Metformin', dose: '500 mg twice daily' },
  { name: 'Atorvastatin', dose: '20 mg once daily' },
  { name: 'Salbutamol inhaler', dose: '100 micrograms as needed' },
  { name: 'Methotrexate', dose: '15 mg once weekly' },
] as const;
const ALLERGIES = ['penicillin', 'latex', 'peanuts', 'shellfish'] as const;
const ARMS = ['A', 'B', 'placebo'] as const;

/** The demo patient `subjectNumber` at `siteId`, enrolled (active) a few days before its first reading. */
export function demoPatient(seed: number, siteId: string, subjectNumber: string, readingCount: number): patientV1.Patient {
  const random = randomOf(seed, `patient:${subjectNumber}`);
  const { firstMs } = readingTimesOf(subjectNumber, readingCount);
  const enrollmentMs = Math.max(Date.UTC(1990, 0, 1), firstMs - (1 + Math.floor(random() * 14)) * DAY_MS);
  const sex = random() < 0.5 ? patientV1.Sex.SEX_FEMALE : patientV1.Sex.SEX_MALE;
  const heightCm = Math.round(sex === patientV1.Sex.SEX_FEMALE ? 163 + gaussian(random) * 6 : 176 + gaussian(random) * 7);
  const bmi = 21 + random() * 10;
  const conditions = CONDITIONS.filter(() => random() < 0.25).map((condition) => ({
    ...condition,
    onsetDate: civilDate(enrollmentMs - Math.floor(random() * 3_650) * DAY_MS),
    ongoing: random() < 0.8,
  }));
  const medications = MEDICATIONS.filter(() => random() < 0.2).map((medication) => ({
    ...medication,
    startDate: civilDate(enrollmentMs - Math.floor(random() * 1_000) * DAY_MS),
    endDate: undefined,
  }));
  return patientV1.Patient.fromPartial({
    subjectNumber,
    siteId,
    protocolId: DEMO_PROTOCOL,
    enrollmentDate: civilDate(enrollmentMs),
    treatmentArm: pick(random, ARMS),
    status: patientV1.PatientStatus.PATIENT_STATUS_ENROLLED,
    demographics: {
      sex,
      birthYear: new Date(enrollmentMs).getUTCFullYear() - 25 - Math.floor(random() * 50),
      heightCm,
      weightKg: Math.round(bmi * (heightCm / 100) ** 2 * 10) / 10,
    },
    medicalHistory: { conditions, medications, allergies: ALLERGIES.filter(() => random() < 0.1) },
  });
}

const DOCUMENT_KINDS = [
  { type: documentV1.DocumentType.DOCUMENT_TYPE_CONSENT, title: 'Informed consent form' },
  { type: documentV1.DocumentType.DOCUMENT_TYPE_CRF, title: 'Case report form, visit' },
  { type: documentV1.DocumentType.DOCUMENT_TYPE_LAB_REPORT, title: 'Laboratory report' },
] as const;

/** The `index`th demo document of a patient: the consent form first, then case report forms and lab reports. */
export function demoDocument(seed: number, subjectNumber: string, patientId: string, index: number, enrollment: patientV1.Patient['enrollmentDate']): documentV1.Document {
  const random = randomOf(seed, `document:${subjectNumber}:${index}`);
  const kind = DOCUMENT_KINDS[index === 0 ? 0 : 1 + ((index - 1) % 2)] ?? DOCUMENT_KINDS[0];
  const day = enrollment ? `${enrollment.year}-${String(enrollment.month).padStart(2, '0')}-${String(enrollment.day).padStart(2, '0')}` : '2024-01-01';
  const content: Record<string, unknown> =
    kind.type === documentV1.DocumentType.DOCUMENT_TYPE_CONSENT
      ? { form: 'ICF', form_version: '2.1', language: pick(random, ['en', 'fr', 'de', 'es']), signed_on: day, optional_biobank_consent: random() < 0.7 }
      : kind.type === documentV1.DocumentType.DOCUMENT_TYPE_CRF
        ? { visit: index, vitals_reviewed: true, adverse_events: random() < 0.1 ? 1 : 0, notes: 'no findings' }
        : { panel: 'basic metabolic', glucose_mmol_l: Math.round((4.5 + random() * 3) * 10) / 10, creatinine_umol_l: Math.round(60 + random() * 50) };
  return documentV1.Document.fromPartial({
    patientId,
    documentType: kind.type,
    title: index === 0 ? kind.title : `${kind.title} ${index}`,
    content,
    metadata: { [DEMO_MARK]: { index }, source: 'npm run seed' },
  });
}

/** The index a seeded document carries in its metadata, or undefined for any other document. */
export function demoDocumentIndexOf(document: documentV1.Document): number | undefined {
  const mark = document.metadata?.[DEMO_MARK] as { index?: unknown } | undefined;
  return typeof mark?.index === 'number' ? mark.index : undefined;
}

/**
 * A patient's readings from `from` (inclusive) to `to` (exclusive), oldest
 * first: a baseline per patient, a daily rhythm and noise; blood pressure and
 * heart rate at every reading, temperature at one in four.
 */
export function* demoReadings(seed: number, subjectNumber: string, patientId: string, times: ReadingTimes): Generator<vitalsV1.VitalSigns> {
  const random = randomOf(seed, `readings:${subjectNumber}`);
  const systolicBase = clamp(122 + gaussian(random) * 12, 100, 165);
  const diastolicBase = clamp(systolicBase * 0.63 + gaussian(random) * 5, 60, 100);
  const heartBase = clamp(72 + gaussian(random) * 8, 55, 95);
  const temperatureBase = 36.6 + gaussian(random) * 0.15;
  for (let index = 0; index < times.count; index += 1) {
    const ms = times.firstMs + index * times.intervalMs;
    const rhythm = Math.sin(((ms % DAY_MS) / DAY_MS) * 2 * Math.PI - Math.PI / 2);
    const systolic = Math.round(clamp(systolicBase + rhythm * 6 + gaussian(random) * 5, 80, 220));
    const diastolic = Math.round(clamp(diastolicBase + rhythm * 4 + gaussian(random) * 4, 40, systolic - 15));
    const reading: vitalsV1.VitalSigns = {
      vitalId: '',
      patientId,
      visitDate: undefined,
      measurementTime: new Date(ms),
      systolicBp: systolic,
      diastolicBp: diastolic,
      heartRate: Math.round(clamp(heartBase + rhythm * 7 + gaussian(random) * 4, 40, 180)),
      temperatureCelsius: index % 4 === 0 ? Math.round(clamp(temperatureBase + rhythm * 0.3 + gaussian(random) * 0.1, 35, 40) * 10) / 10 : undefined,
      // The last reading names its series: a re-run asks for the latest reading alone to know the patient is done.
      deviceData: index === times.count - 1 ? demoSeriesMark(times.count) : undefined,
      createTime: undefined,
    };
    yield reading;
  }
}
