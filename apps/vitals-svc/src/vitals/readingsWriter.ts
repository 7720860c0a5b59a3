import { copyRows } from '@clinical/db';
import type { Principal } from '@clinical/server-kit';
import type pg from 'pg';
import { assertWritablePatients, type PatientAccessRow } from './patientAccess.js';
import { COPY_COLUMNS } from './vitalRecord.js';

/** Patients remembered as writable within one transaction; past this the memory is dropped and rebuilt (flat memory). */
const MAX_REMEMBERED_PATIENTS = 10_000;

/**
 * Lines joined into one flat string at a time. A line is built by
 * concatenation: a tree of a few dozen small strings. Queued by the thousand
 * while a COPY runs, those trees outlived young-generation collections and
 * were copied and promoted: over half of the service's CPU in a 1M-reading
 * stream went to garbage collection. Joined, they die young.
 */
const LINES_PER_BLOCK = 256;

/**
 * Writes validated readings into vital_signs with COPY, in chunks, inside the
 * caller's transaction on `client`. Before a chunk is written, the patients it
 * names for the first time are checked (exist, at the caller's sites, active)
 * with one query. Each chunk is one statement, hence one audit event per
 * patient and chunk.
 */
export class ReadingsWriter {
  /** Queued lines, LINES_PER_BLOCK to a block. */
  private blocks: string[] = [];
  private lines: string[] = [];
  private queued = 0;
  private readonly unchecked = new Set<string>();
  private readonly writable = new Set<string>();
  private written = 0;

  constructor(
    private readonly client: pg.ClientBase,
    private readonly principal: Principal,
  ) {}

  /** Queues one reading: its patient id and its COPY line (with its vital_id). */
  add(patientId: string, copyLine: string): void {
    this.lines.push(copyLine);
    this.queued += 1;
    if (this.lines.length === LINES_PER_BLOCK) {
      this.blocks.push(this.lines.join(''));
      this.lines = [];
    }
    if (!this.writable.has(patientId)) {
      this.unchecked.add(patientId);
    }
  }

  /** Readings queued and not yet written. */
  get pending(): number {
    return this.queued;
  }

  /** Readings written so far. */
  get rowsWritten(): number {
    return this.written;
  }

  /**
   * Checks the new patients, then writes the queued readings in one COPY.
   * What is queued is taken at once, so more readings may be added while the
   * returned promise runs (the caller keeps at most one flush in flight on
   * the connection).
   * @throws NotFoundError or FailedPreconditionError from the patient check.
   */
  flush(): Promise<void> {
    const blocks = this.blocks;
    blocks.push(this.lines.join(''));
    const patientIds = [...this.unchecked];
    this.blocks = [];
    this.lines = [];
    this.queued = 0;
    this.unchecked.clear();
    return this.write(patientIds, blocks.join(''));
  }

  private async write(patientIds: string[], text: string): Promise<void> {
    if (patientIds.length > 0) {
      const { rows } = await this.client.query<PatientAccessRow>(
        'SELECT patient_id::text AS patient_id, site_id, status FROM patients WHERE patient_id = ANY($1::uuid[])',
        [patientIds],
      );
      assertWritablePatients(this.principal, patientIds, rows);
      if (this.writable.size + patientIds.length > MAX_REMEMBERED_PATIENTS) {
        this.writable.clear();
      }
      for (const patientId of patientIds) {
        this.writable.add(patientId);
      }
    }
    if (text.length > 0) {
      this.written += await copyRows(this.client, 'vital_signs', COPY_COLUMNS, text);
    }
  }
}
