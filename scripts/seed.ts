/**
 * `npm run seed -- --sites 5 --patients 1000 --vitals-per-patient 1000`
 * fills a running stack with demo data through its gRPC API, as clients
 * would: patients by BatchCreatePatients, documents by CreateDocument,
 * readings by StreamVitals. Every value comes from --seed and the subject
 * numbers (SITE-001..., DEMO-S001-0001...), so a re-run makes nothing twice:
 * it lists each site's patients first, asks which of them already have their
 * readings (and then, by the order of the work, their documents), and makes
 * only what is missing, with request ids derived from what each call carries
 * so that a retried call gets the first call's response.
 *
 * Each site is seeded as its own coordinator (`demo-seed-SITE-001`, that
 * site only; tokens minted as `npm run token` does, so JWT_SECRET and
 * DATABASE_URL as there), and calls wait out the rate limit as the services'
 * RetryInfo asks. Progress on standard error (a bar on a terminal, plain
 * lines otherwise), the report on standard output.
 */
import { parseArgs } from 'node:util';
import { documentV1, patientV1, vitalsV1 } from '@clinical/contracts';
import { ClientError, createChannel, createClientFactory, Metadata, Status, type Channel } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import { DevTokenError, mintDevTokens } from './devTokens.js';
import {
  demoDocument,
  demoDocumentIndexOf,
  demoPatient,
  demoReadings,
  demoSeriesCountOf,
  patientsPerSite,
  readingTimesOf,
  siteIdOf,
  subjectNumberOf,
  uuidV5,
} from './seed/demoData.js';
import { formatCount, formatDuration, Progress } from './seed/progress.js';
import { withRetries, type RetryStats } from './seed/retries.js';

const USAGE = `usage: npm run seed -- [--sites 5] [--patients 1000] [--vitals-per-patient 1000]
       [--documents-per-patient 1] [--seed 1] [--target 127.0.0.1]
       [--patient-svc host:port] [--vitals-svc host:port] [--streams 3]

  --sites                  sites SITE-001, SITE-002, ...
  --patients               patients in all, spread evenly over the sites
  --vitals-per-patient     readings of each patient (every 15 minutes, recorded by StreamVitals)
  --documents-per-patient  documents of each patient (a consent form, then case report forms and lab reports)
  --seed                   the seed every value is derived from
  --target                 the services' host; their ports PATIENT_SVC_PORT and VITALS_SVC_PORT (50051, 50052)
  --patient-svc, --vitals-svc   a service's address, host:port
  --streams                StreamVitals calls at once (each also creates its patients' documents first)`;

/** Readings of one StreamVitals call: its patients' readings, whole (a patient's readings are never split between calls). */
const STREAM_READINGS = 100_000;
/** Readings per StreamVitals message (the contract's limit). */
const MESSAGE_READINGS = 5_000;
/** Patients per BatchCreatePatients call (the contract allows 1,000). */
const BATCH_PATIENTS = 500;
/** Patients per unit of work when there are no readings (documents only). */
const DOCUMENT_UNIT_PATIENTS = 50;
/** Unary calls in flight at once, in all. */
const UNARY_CONCURRENCY = 8;
const UNARY_DEADLINE_MS = 60_000;
const TOKEN_TTL_SECONDS = 6 * 3_600;
const ACTIVE = new Set([patientV1.PatientStatus.PATIENT_STATUS_SCREENING, patientV1.PatientStatus.PATIENT_STATUS_ENROLLED]);

function fail(message: string, exitCode: number): never {
  process.stderr.write(`seed: ${message}\n`);
  process.exit(exitCode);
}

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        sites: { type: 'string', default: '5' },
        patients: { type: 'string', default: '1000' },
        'vitals-per-patient': { type: 'string', default: '1000' },
        'documents-per-patient': { type: 'string', default: '1' },
        seed: { type: 'string', default: '1' },
        target: { type: 'string', default: '127.0.0.1' },
        'patient-svc': { type: 'string' },
        'vitals-svc': { type: 'string' },
        streams: { type: 'string', default: '3' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    return fail(`${(error as Error).message}\n${USAGE}`, 64);
  }
})();
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

function wholeNumber(name: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    fail(`--${name}: a whole number from ${min} to ${formatCount(max)}\n${USAGE}`, 64);
  }
  return Number(text);
}
const siteCount = wholeNumber('sites', values.sites, 1, 999);
const patientCount = wholeNumber('patients', values.patients, siteCount, 999 * 99_999);
const readingsPerPatient = wholeNumber('vitals-per-patient', values['vitals-per-patient'], 0, 100_000_000);
const documentsPerPatient = wholeNumber('documents-per-patient', values['documents-per-patient'], 0, 100);
const seed = wholeNumber('seed', values.seed, 0, 2 ** 31);
const streamConcurrency = wholeNumber('streams', values.streams, 1, 5);
const patientAddress = values['patient-svc'] ?? `${values.target}:${process.env.PATIENT_SVC_PORT || 50051}`;
const vitalsAddress = values['vitals-svc'] ?? `${values.target}:${process.env.VITALS_SVC_PORT || 50052}`;

// ---------------------------------------------------------------------------

interface SitePatient {
  readonly site: Site;
  /** Its place among its site's patients, from 0. */
  readonly index: number;
  readonly subjectNumber: string;
  /** Found or created. */
  patient?: patientV1.Patient;
  /** Created by this run: nothing of it can exist yet. */
  created: boolean;
  /** Readings still to record. */
  needsReadings: boolean;
  /** Seeded document indexes known to exist; undefined until asked (or when nothing is needed). */
  documentsFound?: Set<number>;
  /** Its readings and documents were found there already. */
  complete: boolean;
}

/** A site, the clients of its coordinator, and its demo patients. */
interface Site extends ReturnType<typeof clientsOf> {
  readonly siteId: string;
  readonly entries: SitePatient[];
}

/** The patient an entry names, once found or created. */
function patientOf(entry: SitePatient): patientV1.Patient {
  if (!entry.patient) {
    throw new Error(`${entry.subjectNumber} was neither found nor created`);
  }
  return entry.patient;
}

const report = {
  patientsCreated: 0,
  patientsExisting: 0,
  documentsCreated: 0,
  documentsExisting: 0,
  readingsRecorded: 0,
  readingsExisting: 0,
  streams: 0,
  inactiveSkipped: 0,
  /** Patients found with another number of seeded readings (an earlier run with another --vitals-per-patient): left as they are. */
  otherSeries: 0,
};
const stats: RetryStats = { rateLimitedMs: 0, retries: 0 };
const interrupted = new AbortController();
const channels: Channel[] = [];
const factory = createClientFactory().use(errorDetailsClientMiddleware);

function clientsOf(token: string) {
  const options = { '*': { metadata: Metadata({ authorization: `Bearer ${token}` }), signal: interrupted.signal } };
  return {
    patients: factory.create(patientV1.PatientServiceDefinition, patientChannel, options),
    documents: factory.create(documentV1.DocumentServiceDefinition, patientChannel, options),
    vitals: factory.create(vitalsV1.VitalsServiceDefinition, vitalsChannel, options),
  };
}

/** Runs `work` over `items`, at most `limit` at once; the first failure stops the rest. */
async function eachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (!failed && next < items.length) {
        const index = next;
        next += 1;
        try {
          await work(items[index] as T);
        } catch (error) {
          failed = true;
          throw error;
        }
      }
    }),
  );
}

/** Unary calls share one budget of concurrency, whoever makes them. */
let unaryInFlight = 0;
const unaryWaiting: (() => void)[] = [];
async function unary<T>(call: (options: { signal: AbortSignal }) => Promise<T>): Promise<T> {
  while (unaryInFlight >= UNARY_CONCURRENCY) {
    await new Promise<void>((resolve) => unaryWaiting.push(resolve));
  }
  unaryInFlight += 1;
  try {
    return await withRetries(() => call({ signal: AbortSignal.any([interrupted.signal, AbortSignal.timeout(UNARY_DEADLINE_MS)]) }), {
      stats,
      onRetry,
      signal: interrupted.signal,
    });
  } finally {
    unaryInFlight -= 1;
    unaryWaiting.shift()?.();
  }
}

let rateLimitNoted = 0;
function onRetry(reason: string, delayMs: number): void {
  if (reason === 'rate limit' && delayMs >= 1_000 && performance.now() - rateLimitNoted > 10_000) {
    rateLimitNoted = performance.now();
    progress.note(`a site's rate limit is spent (RATE_LIMIT_POINTS per RATE_LIMIT_WINDOW_SECONDS): waiting ${formatDuration(delayMs)} as the service asks`);
  }
}

// ---------------------------------------------------------------------------

const startedAt = performance.now();
const siteIds = Array.from({ length: siteCount }, (_, index) => siteIdOf(index));
let tokens: string[];
try {
  tokens = await mintDevTokens(siteIds.map((siteId) => ({ sub: `demo-seed-${siteId}`, roles: ['coordinator'], sites: [siteId], ttlSeconds: TOKEN_TTL_SECONDS })));
} catch (error) {
  if (error instanceof DevTokenError) {
    fail(error.message, error.exitCode);
  }
  throw error;
}
const patientChannel = createChannel(patientAddress);
const vitalsChannel = createChannel(vitalsAddress);
channels.push(patientChannel, vitalsChannel);
const sites: Site[] = patientsPerSite(siteCount, patientCount).map((count, siteIndex) => {
  const site: Site = { siteId: siteIdOf(siteIndex), ...clientsOf(tokens[siteIndex] ?? ''), entries: [] };
  for (let index = 0; index < count; index += 1) {
    site.entries.push({ site, index, subjectNumber: subjectNumberOf(siteIndex, index), created: false, needsReadings: readingsPerPatient > 0, complete: false });
  }
  return site;
});

const progress = new Progress({ stream: process.stderr, unit: readingsPerPatient > 0 ? 'readings' : 'documents' });
const patientsCounter = progress.counter('patients', patientCount);
const documentsCounter = readingsPerPatient > 0 ? progress.counter('documents', patientCount * documentsPerPatient) : undefined;
progress.total = readingsPerPatient > 0 ? patientCount * readingsPerPatient : patientCount * documentsPerPatient;
const countDocuments = (count: number) => {
  if (documentsCounter) {
    documentsCounter.done += count;
  } else {
    progress.done += count;
  }
};

process.once('SIGINT', () => {
  interrupted.abort(new Error('interrupted'));
  progress.stop();
  process.stderr.write('seed: interrupted; what was committed stays, and a re-run goes on from there (streams in flight were rolled back)\n');
  process.exit(130);
});

progress.setPhase('patients');
progress.start();

try {
  // 1. Each site's patients: those there already, then the missing ones in batches.
  await Promise.all(
    sites.map(async (site) => {
      const wanted = new Map(site.entries.map((entry) => [entry.subjectNumber, entry]));
      let pageToken = '';
      do {
        const page = await unary((options) => site.patients.listPatients({ siteId: site.siteId, pageSize: 500, pageToken }, options));
        for (const patient of page.patients) {
          const entry = wanted.get(patient.subjectNumber);
          if (entry) {
            entry.patient = patient;
            report.patientsExisting += 1;
            patientsCounter.done += 1;
          }
        }
        pageToken = page.nextPageToken;
      } while (pageToken);

      const missing = site.entries.filter((entry) => !entry.patient);
      for (let from = 0; from < missing.length; from += BATCH_PATIENTS) {
        const batch = missing.slice(from, from + BATCH_PATIENTS);
        const requests = batch.map((entry) => ({
          patient: demoPatient(seed, site.siteId, entry.subjectNumber, readingsPerPatient),
          requestId: '',
        }));
        const requestId = uuidV5(`patients:${seed}:${readingsPerPatient}:${batch.map((entry) => entry.subjectNumber).join(',')}`);
        const { patients } = await unary((options) => site.patients.batchCreatePatients({ requests, requestId }, options));
        batch.forEach((entry, index) => {
          entry.patient = patients[index];
          entry.created = true;
        });
        report.patientsCreated += patients.length;
        patientsCounter.done += patients.length;
      }
    }),
  );

  // 2. What the patients already there have: their readings (all or none: one
  //    stream each), and, for those without, their documents.
  progress.setPhase('checking');
  const existing = sites.flatMap((site) => site.entries.filter((entry) => !entry.created));
  await eachLimited(existing, UNARY_CONCURRENCY, async (entry) => {
    const { site } = entry;
    const { patientId, status } = patientOf(entry);
    if (readingsPerPatient > 0) {
      if (!ACTIVE.has(status)) {
        // Readings cannot be recorded for a patient who left the study.
        entry.needsReadings = false;
        report.inactiveSkipped += 1;
      } else {
        const found = await demoReadingsOf(site, patientId, entry.subjectNumber);
        if (found > 0) {
          // Its documents were created before its readings were streamed: they are there too.
          entry.needsReadings = false;
          entry.complete = true;
          report.readingsExisting += found;
          report.documentsExisting += documentsPerPatient;
          progress.done += readingsPerPatient;
          progress.skipped += readingsPerPatient;
          countDocuments(documentsPerPatient);
          if (found !== readingsPerPatient) {
            report.otherSeries += 1;
          }
          return;
        }
      }
    }
    if (documentsPerPatient > 0) {
      entry.documentsFound = await seededDocumentsOf(site, patientId);
      const found = [...entry.documentsFound].filter((index) => index < documentsPerPatient).length;
      report.documentsExisting += found;
      countDocuments(found);
      if (readingsPerPatient === 0) {
        progress.skipped += found;
      }
    }
  });

  // 3. Units of work, each a StreamVitals call's patients (or a few dozen patients
  //    when there are no readings): their documents first, then their readings.
  progress.setPhase('writing');
  const units: SitePatient[][] = [];
  for (const site of sites) {
    let unit: SitePatient[] = [];
    for (const entry of site.entries.filter((candidate) => !candidate.complete)) {
      const full = readingsPerPatient > 0 ? (unit.length + 1) * readingsPerPatient > STREAM_READINGS : unit.length >= DOCUMENT_UNIT_PATIENTS;
      if (unit.length > 0 && full) {
        units.push(unit);
        unit = [];
      }
      unit.push(entry);
    }
    if (unit.length > 0) {
      units.push(unit);
    }
  }
  // Sites interleaved, so that each site's rate limit is spent evenly.
  const firstIndexOf = (unit: SitePatient[]) => unit[0]?.index ?? 0;
  units.sort((a, b) => firstIndexOf(a) - firstIndexOf(b));
  await eachLimited(units, streamConcurrency, async (unit) => {
    await Promise.all(unit.map((entry) => createMissingDocuments(entry)));
    const streamed = unit.filter((entry) => entry.needsReadings);
    if (streamed.length > 0) {
      await streamReadings(streamed);
    }
  });
  progress.setPhase('');
  progress.stop();
} catch (error) {
  progress.stop();
  const problem =
    error instanceof ClientError
      ? `${error.path} failed: ${Status[error.code]} ${error.details}${error.code === Status.UNAVAILABLE ? ` (is \`npm start\` running? patient-svc ${patientAddress}, vitals-svc ${vitalsAddress})` : ''}`
      : (error as Error).message;
  fail(`${problem}\nwhat was committed stays; a re-run goes on from there`, error instanceof ClientError && error.code === Status.UNAVAILABLE ? 69 : 1);
} finally {
  for (const channel of channels) {
    channel.close();
  }
}

const seconds = (performance.now() - startedAt) / 1_000;
const lines = [
  `seed: ${siteCount} site${siteCount === 1 ? '' : 's'} (${siteIds[0]}${siteCount > 1 ? ` to ${siteIds.at(-1)}` : ''}), protocol DEMO-001, seed ${seed}`,
  `  patients:  ${formatCount(report.patientsCreated)} created, ${formatCount(report.patientsExisting)} already there`,
  `  documents: ${formatCount(report.documentsCreated)} created, ${formatCount(report.documentsExisting)} already there`,
  `  readings:  ${formatCount(report.readingsRecorded)} recorded in ${report.streams} stream${report.streams === 1 ? '' : 's'}, ${formatCount(report.readingsExisting)} already there` +
    (report.inactiveSkipped > 0 ? `; ${report.inactiveSkipped} patients no longer active skipped` : '') +
    (report.otherSeries > 0 ? `; ${report.otherSeries} patients had another number of readings (an earlier --vitals-per-patient), left as they are` : ''),
  `  took ${seconds.toFixed(1)} s: ${formatCount(report.readingsRecorded / seconds)} readings/s; ${formatDuration(stats.rateLimitedMs)} waiting on rate limits, ${stats.retries} calls retried`,
];
process.stdout.write(`${lines.join('\n')}\n`);

// ---------------------------------------------------------------------------

/**
 * How many seeded readings the patient has: its latest reading closes a
 * seeded series and says how long it is (a stream records all of a patient's
 * readings or none), or, when a later reading came since, the readings in the
 * seeder's time window; 0 when it has none.
 */
async function demoReadingsOf(site: Site, patientId: string, subjectNumber: string): Promise<number> {
  const { reading } = await unary((options) => site.vitals.getLatestVitals({ patientId }, options));
  if (!reading) {
    return 0;
  }
  const series = demoSeriesCountOf(reading);
  if (series !== undefined && reading.measurementTime?.getTime() === readingTimesOf(subjectNumber, series).lastMs) {
    return series;
  }
  const times = readingTimesOf(subjectNumber, readingsPerPatient);
  const summary = await unary((options) =>
    site.vitals.summarizeVitals({ patientId, startTime: new Date(times.firstMs), endTime: new Date(times.lastMs + 1) }, options),
  );
  return Number(summary.readingCount);
}

/** The indexes of the seeded documents a patient has. */
async function seededDocumentsOf(site: Site, patientId: string): Promise<Set<number>> {
  const found = new Set<number>();
  let pageToken = '';
  do {
    const page = await unary((options) => site.documents.listDocuments({ patientId, pageSize: 200, pageToken }, options));
    for (const document of page.documents) {
      const index = demoDocumentIndexOf(document);
      if (index !== undefined) {
        found.add(index);
      }
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
  return found;
}

async function createMissingDocuments(entry: SitePatient): Promise<void> {
  const { site } = entry;
  const patient = patientOf(entry);
  for (let index = 0; index < documentsPerPatient; index += 1) {
    if (entry.documentsFound?.has(index)) {
      continue;
    }
    const document = demoDocument(seed, entry.subjectNumber, patient.patientId, index, patient.enrollmentDate);
    const requestId = uuidV5(`document:${seed}:${entry.subjectNumber}:${index}`);
    await unary((options) => site.documents.createDocument({ document, requestId }, options));
    report.documentsCreated += 1;
    countDocuments(1);
  }
}

/** One StreamVitals call with every reading of these patients, retried whole as the service asks. */
async function streamReadings(entries: readonly SitePatient[]): Promise<void> {
  const site = entries[0]?.site;
  if (!site) {
    return;
  }
  const requestId = uuidV5(`readings:${seed}:${readingsPerPatient}:${entries.map((entry) => entry.subjectNumber).join(',')}`);
  let sent = 0;
  async function* messages(): AsyncGenerator<vitalsV1.StreamVitalsRequest> {
    let readings: vitalsV1.VitalSigns[] = [];
    for (const entry of entries) {
      for (const reading of demoReadings(seed, entry.subjectNumber, patientOf(entry).patientId, readingTimesOf(entry.subjectNumber, readingsPerPatient))) {
        readings.push(reading);
        if (readings.length === MESSAGE_READINGS) {
          yield { readings, requestId };
          sent += readings.length;
          progress.done += readings.length;
          readings = [];
        }
      }
    }
    if (readings.length > 0) {
      yield { readings, requestId };
      sent += readings.length;
      progress.done += readings.length;
    }
  }
  const response = await withRetries(
    async () => {
      progress.done -= sent;
      sent = 0;
      return site.vitals.streamVitals(messages());
    },
    { stats, onRetry, retryAborted: true, signal: interrupted.signal },
  );
  report.streams += 1;
  report.readingsRecorded += Number(response.acceptedCount);
}
