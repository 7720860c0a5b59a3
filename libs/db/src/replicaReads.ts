import { setTimeout as delay } from 'node:timers/promises';
import { sql, type DatabasePool } from 'slonik';
import { z } from 'zod';

/**
 * Where reads go: streaming replicas when they are recent enough, else the
 * primary.
 *
 * - A read that carries a consistency token (the WAL position a caller's
 *   write returned) goes to a replica that has replayed that far, waiting up
 *   to `tokenWaitMs` for one; else to the primary. A caller so never reads
 *   older than its own writes.
 * - A read without one goes to a replica whose replay was, when last probed,
 *   past every commit made more than `maxLagMs` ago; else to the primary.
 * - A replica whose read fails for the replica's sake (its connection, or a
 *   conflict with the WAL it replays) is set aside until its next good probe,
 *   and the read is done again on the primary.
 */
export interface ReplicaReads {
  /** Whether there are replicas at all: without, every read is the primary's and writes need no token. */
  readonly enabled: boolean;
  /** Runs `read` on the pool chosen for `token` (see above). */
  read<T>(token: string | undefined, read: (pool: DatabasePool) => Promise<T>): Promise<T>;
  /** The token of what has committed on the primary so far: call it after a write's commit. */
  tokenAfterWrite(): Promise<string>;
  /** Stops probing; the replica pools end (the primary is the caller's). */
  close(): Promise<void>;
}

export interface ReplicaReadsOptions {
  readonly primary: DatabasePool;
  readonly replicas: readonly DatabasePool[];
  /** A read without a token may miss commits younger than this. */
  readonly maxLagMs: number;
  /** How long a read with a token waits for a replica to replay that far before it goes to the primary. */
  readonly tokenWaitMs: number;
  /** How often the primary's position and each replica's replay are read. Default: a quarter of maxLagMs, at most 250 ms. */
  readonly probeMs?: number;
  readonly onError?: (error: unknown) => void;
}

/** 'X/Y' (pg_lsn text), two hex halves of a 64-bit position. */
const LSN = /^([0-9A-F]{1,8})\/([0-9A-F]{1,8})$/i;
const lsnOf = (text: string): bigint | undefined => {
  const match = LSN.exec(text);
  return match ? (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`) : undefined;
};

/** Is the token a caller sent one: a WAL position, as tokenAfterWrite writes it. */
export const isConsistencyToken = (token: string): boolean => lsnOf(token) !== undefined;

const position = z.object({ lsn: z.string().nullable() });

interface Replica {
  readonly pool: DatabasePool;
  /** The last replay position read from it; it only grows. */
  replayed: bigint;
  /** False from a failed read or probe until the next good probe. */
  healthy: boolean;
}

export function createReplicaReads(options: ReplicaReadsOptions): ReplicaReads {
  const { primary } = options;
  if (options.replicas.length === 0) {
    return {
      enabled: false,
      read: (_token, read) => read(primary),
      tokenAfterWrite: () => primaryPosition(),
      close: async () => {},
    };
  }
  const probeMs = options.probeMs ?? Math.min(250, Math.max(10, Math.floor(options.maxLagMs / 4)));
  const replicas: Replica[] = options.replicas.map((pool) => ({ pool, replayed: -1n, healthy: false }));
  /** The primary's position at each probe, oldest first, kept for maxLagMs and one probe more. */
  const samples: { at: number; lsn: bigint }[] = [];
  let turn = 0;
  let closed = false;

  async function primaryPosition(): Promise<string> {
    return (await primary.one(sql.type(position)`SELECT pg_current_wal_insert_lsn()::text AS lsn`)).lsn as string;
  }
  async function replayOf(replica: Replica): Promise<bigint> {
    const { lsn } = await replica.pool.one(sql.type(position)`SELECT pg_last_wal_replay_lsn()::text AS lsn`);
    const replayed = lsn === null ? undefined : lsnOf(lsn);
    if (replayed === undefined) {
      throw new Error('a replica database is not in recovery: no replay position');
    }
    replica.replayed = replayed > replica.replayed ? replayed : replica.replayed;
    return replica.replayed;
  }
  const report = (error: unknown) => {
    try {
      options.onError?.(error);
    } catch {
      // A failing reporter must not stop the probes.
    }
  };

  async function probe(): Promise<void> {
    try {
      const at = Date.now();
      const lsn = lsnOf(await primaryPosition());
      if (lsn !== undefined) {
        samples.push({ at, lsn });
      }
      // The oldest kept is the last one taken maxLagMs ago or before: the bound needs no older.
      while (samples.length > 1 && (samples[1]?.at ?? at) <= at - options.maxLagMs) {
        samples.shift();
      }
    } catch (error) {
      report(error);
    }
    await Promise.all(
      replicas.map(async (replica) => {
        try {
          await replayOf(replica);
          replica.healthy = true;
        } catch (error) {
          replica.healthy = false;
          report(error);
        }
      }),
    );
  }
  const probing = (async () => {
    while (!closed) {
      await probe();
      // Unreferenced: the probes alone never keep a process alive.
      await delay(probeMs, undefined, { ref: false });
    }
  })();

  /**
   * The position every commit older than maxLagMs is at or before: the first
   * sample taken since then. None when the primary went unprobed that long (an
   * older sample could be short of it): such reads go to the primary.
   */
  function stalenessBound(): bigint | undefined {
    const since = Date.now() - options.maxLagMs;
    return samples.find((sample) => sample.at >= since)?.lsn;
  }
  function nextReplica(accept: (replica: Replica) => boolean): Replica | undefined {
    for (let tried = 0; tried < replicas.length; tried += 1) {
      const replica = replicas[(turn += 1) % replicas.length];
      if (replica?.healthy && accept(replica)) {
        return replica;
      }
    }
    return undefined;
  }
  async function replicaFor(token: string | undefined): Promise<Replica | undefined> {
    const wanted = token === undefined ? undefined : lsnOf(token);
    if (wanted === undefined) {
      const bound = stalenessBound();
      return bound === undefined ? undefined : nextReplica((replica) => replica.replayed >= bound);
    }
    const caughtUp = nextReplica((replica) => replica.replayed >= wanted);
    if (caughtUp) {
      return caughtUp;
    }
    // Not there at the last look: ask one replica again until it is, or the wait is over.
    const asked = nextReplica(() => true);
    const deadline = Date.now() + options.tokenWaitMs;
    while (asked && Date.now() <= deadline) {
      try {
        if ((await replayOf(asked)) >= wanted) {
          return asked;
        }
      } catch {
        asked.healthy = false;
        return undefined;
      }
      await delay(2);
    }
    return undefined;
  }

  return {
    enabled: true,
    async read(token, read) {
      const replica = await replicaFor(token);
      if (!replica) {
        return read(primary);
      }
      try {
        return await read(replica.pool);
      } catch (error) {
        if (!isReplicaTrouble(error)) {
          throw error;
        }
        replica.healthy = false;
        report(error);
        return read(primary);
      }
    },
    tokenAfterWrite: primaryPosition,
    async close() {
      closed = true;
      await probing;
      await Promise.all(replicas.map(({ pool }) => pool.end()));
    },
  };
}

/**
 * Errors of the replica, not of the statement, so that the same read may
 * succeed on the primary: its connection failed or was ended (class 08, 57P0x),
 * or the standby cancelled the read for a conflict with the WAL it replays
 * (40001 on a read, which can conflict with nothing else).
 */
function isReplicaTrouble(error: unknown): boolean {
  const names = ['ConnectionError', 'BackendTerminatedError', 'BackendTerminatedUnexpectedlyError'];
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) {
    const code = (cause as { code?: unknown }).code;
    if (
      names.includes(cause.name) ||
      code === 'ECONNREFUSED' ||
      code === 'ECONNRESET' ||
      code === '40001' ||
      (typeof code === 'string' && (code.startsWith('08') || code.startsWith('57P0')))
    ) {
      return true;
    }
  }
  return false;
}
