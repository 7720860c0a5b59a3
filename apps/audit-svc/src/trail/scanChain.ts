import { databaseConnection } from '@clinical/db/raw-pg';
import { UnavailableError } from '@clinical/errors';
import pg from 'pg';
import { ChainLinks, type LinkOutcome } from './chainLinks.js';
import { ChainFindings, checkLinksInOrder, scanChainSlice, type ChainSlice } from './scanChainSlice.js';

/** What to scan: positions first..last, reading event_seq low..high (none when null), on a snapshot. */
export interface ChainScanRequest {
  readonly databaseUrl: string;
  /** Exported by the transaction the verification answers from (see exportSnapshot). */
  readonly snapshot: string;
  /** Connections reading slices side by side. */
  readonly connections: number;
  readonly first: number;
  readonly last: number;
  readonly low: number | null;
  readonly high: number | null;
  /** event_seq values per slice (one COPY statement each). */
  readonly batchSize: number;
  /** The row_hash the entry at `first` must link to, in hex. */
  readonly priorHash: string;
  /** Runs ChainLinks may hold before the links are checked in position order instead. */
  readonly maxOpenRuns: number;
}

/** What the scan found: per-entry findings, and what the links came to. */
export interface ChainScanOutcome {
  readonly findings: ChainFindings;
  readonly links: LinkOutcome;
}

/** What pg_export_snapshot returns, e.g. 00000003-0000001B-1. */
const SNAPSHOT_ID = /^[0-9A-F]+-[0-9A-F]+-[0-9]+$/;

/** event_seq low..high cut into slices of `size` values, each over positions first..last. */
function slicesOf(request: ChainScanRequest): ChainSlice[] {
  const slices: ChainSlice[] = [];
  if (request.low === null || request.high === null) {
    return slices;
  }
  for (let from = request.low; from <= request.high; from += request.batchSize) {
    slices.push({ first: request.first, last: request.last, low: from, high: Math.min(from + request.batchSize - 1, request.high) });
  }
  return slices;
}

/**
 * Opens `count` plain `pg` connections (binary COPY is beyond Slonik) on
 * the snapshot, as the service's own role, each in a read-only REPEATABLE
 * READ transaction. Each runs its statements for as long as a whole-trail
 * check may take, without parallel workers (the connections themselves
 * share the cores), and without hash joins: chain and events meet on
 * event_seq, indexed on both sides, and a merge join reads both in order
 * where, without statistics (a bulk load before autovacuum ran), the planner
 * would rather hash a slice's event rows and spill them to disk. A reader
 * checks every second that its client is still there: when a cancelled
 * call terminates the worker, its statements stop within a second, even one
 * waiting on a lock (which would otherwise notice only at its next write).
 * @throws UnavailableError when a connection cannot be had.
 */
async function openReaders(request: ChainScanRequest, readers: pg.Client[]): Promise<void> {
  if (!SNAPSHOT_ID.test(request.snapshot)) {
    throw new Error('not a snapshot id');
  }
  const connection = databaseConnection(request.databaseUrl);
  await Promise.all(
    Array.from({ length: request.connections }, async () => {
      // A server that does not answer is UNAVAILABLE within seconds, not at the call's deadline.
      const reader = new pg.Client({
        connectionString: connection.url,
        ssl: connection.ssl,
        application_name: 'audit-svc-verify',
        connectionTimeoutMillis: 5_000,
      });
      // A connection that breaks emits 'error' besides failing its statement: the statement's failure is what counts.
      reader.on('error', () => {});
      readers.push(reader);
      try {
        await reader.connect();
      } catch (error) {
        throw new UnavailableError('database unavailable, retry later', { cause: error });
      }
      await reader.query(`BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
        SET TRANSACTION SNAPSHOT '${request.snapshot}';
        SET LOCAL statement_timeout = '600s';
        SET LOCAL max_parallel_workers_per_gather = 0;
        SET LOCAL enable_hashjoin = off;
        SET LOCAL client_connection_check_interval = '1s'`);
    }),
  );
}

/**
 * Reads and checks positions first..last on the snapshot: the connections
 * take slices of event_seq in turn (scanChainSlice), every slice to its end
 * (the earliest break wins whatever slice holds it), then the links where
 * the slices' runs meet (ChainLinks), or, when too many runs were left
 * apart, in position order (checkLinksInOrder). The connections are closed
 * whatever happens; ending a session ends its read-only transaction.
 */
export async function scanChain(request: ChainScanRequest): Promise<ChainScanOutcome> {
  const findings = new ChainFindings();
  const chainLinks = new ChainLinks(request.maxOpenRuns);
  const slices = slicesOf(request);
  const readers: pg.Client[] = [];
  try {
    await openReaders(request, readers);
    let failed = false;
    const read = async (reader: pg.Client) => {
      for (let slice = slices.shift(); slice && !failed; slice = slices.shift()) {
        try {
          await scanChainSlice(reader, slice, findings, chainLinks);
        } catch (error) {
          failed = true;
          throw error;
        }
      }
    };
    const settled = await Promise.allSettled(readers.map(read));
    const rejected = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (rejected) {
      throw rejected.reason;
    }
    const prior = Buffer.from(request.priorHash, 'hex');
    const [reader] = readers;
    const links =
      chainLinks.overflowed && reader
        ? await checkLinksInOrder(reader, request.first, request.last, prior)
        : chainLinks.finish(request.first, request.last, prior);
    return { findings, links };
  } finally {
    await Promise.all(readers.map((reader) => reader.end().catch(() => {})));
  }
}
