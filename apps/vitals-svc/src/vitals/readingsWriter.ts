import { createHash } from 'node:crypto';
import { BinaryRowWriter, copyRows } from '@clinical/db';
import type { Principal } from '@clinical/server-kit';
import type pg from 'pg';
import { assertWritablePatients, type PatientAccessRow } from './patientAccess.js';
import type { CheckedReading } from './validateReading.js';
import { BULK_ROW_COLUMNS, writeReadingRow } from './vitalRecord.js';

/** Patients remembered as writable within one transaction; past this the memory is dropped and rebuilt (flat memory). */
const MAX_REMEMBERED_PATIENTS = 10_000;

/** One patient's readings in the chunk being queued: its rows and what its audit event says of them. */
interface PatientRows {
  readonly patientId: string;
  readonly rows: BinaryRowWriter;
  count: number;
  firstMs: number;
  lastMs: number;
}

/**
 * Writes validated readings into vital_signs_bulk, in chunks, inside the
 * caller's transaction on `client` (which carries the audit context). Per
 * chunk: the patients it names for the first time are checked (exist, at the
 * caller's sites, active) with one query; one call writes its audit events,
 * one per patient (count, first and last measurement time, SHA-256 of the
 * patient's rows as written), and claims them for the next statement; one
 * binary COPY writes the rows, grouped by patient. The database refuses the
 * COPY unless the events account for every row (see the migration
 * vital-signs-bulk-ingestion), and checks nothing per row beyond the table's
 * CHECK constraints: everything a trigger or foreign key would find per row,
 * the service has already.
 */
export class ReadingsWriter {
  private chunk = new Map<string, PatientRows>();
  private queued = 0;
  private readonly unchecked = new Set<string>();
  /** Patients checked in this transaction. */
  private readonly writable = new Set<string>();
  /** Patient ids' 16 bytes, parsed once per transaction. */
  private readonly idBytes = new Map<string, Buffer>();
  /** The row buffers of the chunk written last, reused once its COPY is done. */
  private spare: BinaryRowWriter[] = [];
  /** Where a chunk's rows are gathered for its COPY, reused (one COPY at a time). */
  private copyBuffer = Buffer.alloc(0);

  constructor(
    private readonly client: pg.ClientBase,
    private readonly principal: Principal,
  ) {}

  /** Queues one reading, with its vital_id's 16 bytes (copied at once). */
  add(reading: CheckedReading, vitalId: Uint8Array): void {
    let patient = this.chunk.get(reading.patientId);
    const timeMs = reading.measurementMs;
    if (!patient) {
      patient = { patientId: reading.patientId, rows: this.spare.pop() ?? new BinaryRowWriter(), count: 0, firstMs: timeMs, lastMs: timeMs };
      this.chunk.set(reading.patientId, patient);
      if (!this.writable.has(reading.patientId)) {
        this.unchecked.add(reading.patientId);
      }
    }
    writeReadingRow(patient.rows, reading, vitalId, this.patientIdBytes(reading.patientId));
    patient.count += 1;
    patient.firstMs = Math.min(patient.firstMs, timeMs);
    patient.lastMs = Math.max(patient.lastMs, timeMs);
    this.queued += 1;
  }

  /** Readings queued and not yet written. */
  get pending(): number {
    return this.queued;
  }

  /**
   * Checks the new patients, records the audit events of the queued readings,
   * then writes them in one COPY. What is queued is taken at once, so more
   * readings may be added while the returned promise runs (the caller keeps
   * at most one flush in flight on the connection).
   * @returns the transaction's time: every row's recorded_at.
   * @throws NotFoundError or FailedPreconditionError from the patient check.
   */
  flush(): Promise<Date> {
    const patients = [...this.chunk.values()];
    const unchecked = [...this.unchecked];
    this.chunk = new Map();
    this.queued = 0;
    this.unchecked.clear();
    return this.write(unchecked, patients);
  }

  private async write(unchecked: string[], patients: PatientRows[]): Promise<Date> {
    if (unchecked.length > 0) {
      const { rows } = await this.client.query<PatientAccessRow>(
        'SELECT patient_id::text AS patient_id, site_id, status FROM patients WHERE patient_id = ANY($1::uuid[])',
        [unchecked],
      );
      assertWritablePatients(this.principal, unchecked, rows);
      if (this.writable.size + unchecked.length > MAX_REMEMBERED_PATIENTS) {
        this.writable.clear();
      }
      for (const patientId of unchecked) {
        this.writable.add(patientId);
      }
    }
    // Array literals made here (none of these values needs quoting): the driver's conversion of
    // each element allocated more than the rest of the chunk's work.
    const { rows } = await this.client.query<{ recorded_at: Date }>({
      // Prepared once per connection: a stream makes this call for every chunk.
      name: 'record-vital-signs-bulk-audit',
      text: 'SELECT record_vital_signs_bulk_audit($1::uuid[], $2::int4[], $3::timestamptz[], $4::timestamptz[], $5::text[]) AS recorded_at',
      values: [
        arrayLiteral(patients, (patient) => patient.patientId),
        arrayLiteral(patients, (patient) => String(patient.count)),
        arrayLiteral(patients, (patient) => new Date(patient.firstMs).toISOString()),
        arrayLiteral(patients, (patient) => new Date(patient.lastMs).toISOString()),
        arrayLiteral(patients, (patient) => createHash('sha256').update(patient.rows.bytes()).digest('hex')),
      ],
    });
    await copyRows(this.client, 'vital_signs_bulk', BULK_ROW_COLUMNS, this.gathered(patients), { format: 'binary' });
    for (const patient of patients) {
      patient.rows.reset();
    }
    this.spare = patients.map((patient) => patient.rows);
    return rows[0]?.recorded_at ?? new Date();
  }

  /**
   * The chunk's rows in one buffer, for one socket write (a hundred patients'
   * rows sent apiece cost a system call each); the buffer is kept for the
   * next chunk rather than allocated per chunk.
   */
  private gathered(patients: readonly PatientRows[]): Buffer {
    const length = patients.reduce((sum, patient) => sum + patient.rows.byteLength, 0);
    if (this.copyBuffer.length < length) {
      this.copyBuffer = Buffer.allocUnsafe(Math.max(length, 2 * this.copyBuffer.length));
    }
    let at = 0;
    for (const patient of patients) {
      at += patient.rows.bytes().copy(this.copyBuffer, at);
    }
    return this.copyBuffer.subarray(0, length);
  }

  private patientIdBytes(patientId: string): Buffer {
    let bytes = this.idBytes.get(patientId);
    if (!bytes) {
      bytes = Buffer.from(patientId.replaceAll('-', ''), 'hex');
      if (this.idBytes.size >= MAX_REMEMBERED_PATIENTS) {
        this.idBytes.clear();
      }
      this.idBytes.set(patientId, bytes);
    }
    return bytes;
  }
}

/** A PostgreSQL array literal of values that need no quoting (UUIDs, numbers, ISO times, hex). */
function arrayLiteral<T>(items: readonly T[], text: (item: T) => string): string {
  return `{${items.map(text).join(',')}}`;
}
