/** Consecutive chain positions whose links were checked as they arrived. */
interface Run {
  readonly start: number;
  end: number;
  /** The previous_hash of the entry at `start`. */
  readonly startPrevious: Buffer;
  /** The row_hash of the entry at `end`. */
  endRow: Buffer;
}

/** What the links of a range of positions came to. */
export interface LinkOutcome {
  /** The first position missing before the last one present (DELETED). */
  readonly firstGap?: number;
  /** The first entry that does not link to the one before it (INSERTED). */
  readonly firstBroken?: number;
  /** The first of the missing positions that end the range (from it to the range's end), if any. */
  readonly missingTailFrom?: number;
}

/**
 * Checks that chain positions follow each other and link (each entry's
 * previous_hash is the row_hash of the entry before it) when the entries
 * arrive in event_seq order rather than position order, from several
 * readers at once. Each reader checks the links within a run of consecutive
 * positions itself and hands the run over here when its next entry is not
 * the following position; runs that meet are joined and their link checked
 * on the spot, so what is held is one run per stretch of positions not yet
 * met by its neighbours: a handful, since the sealer chains each batch in
 * event_seq order (a transaction committing late is a run of its own).
 *
 * Past `maxOpenRuns` stretches (a trail written by many transactions that
 * each stayed open across many seals, or rewritten behind the services'
 * back) it stops holding them and says so (`overflowed`): the caller then
 * checks the links in position order instead, in constant memory.
 */
export class ChainLinks {
  private readonly byStart = new Map<number, Run>();
  private readonly byEnd = new Map<number, Run>();
  private firstBroken = Number.POSITIVE_INFINITY;
  overflowed = false;

  constructor(private readonly maxOpenRuns: number) {}

  /** A link found broken within a run, at `position`. */
  broken(position: number): void {
    if (position < this.firstBroken) {
      this.firstBroken = position;
    }
  }

  /** Hands over a finished run start..end; the hashes are copied. */
  add(start: number, end: number, startPrevious: Buffer, endRow: Buffer): void {
    if (this.overflowed) {
      return;
    }
    let run: Run = { start, end, startPrevious: Buffer.from(startPrevious), endRow: Buffer.from(endRow) };
    const before = this.byEnd.get(start - 1);
    if (before) {
      if (!before.endRow.equals(run.startPrevious)) {
        this.broken(start);
      }
      this.byEnd.delete(before.end);
      before.end = run.end;
      before.endRow = run.endRow;
      run = before;
    } else {
      this.byStart.set(run.start, run);
    }
    const after = this.byStart.get(run.end + 1);
    if (after) {
      if (!run.endRow.equals(after.startPrevious)) {
        this.broken(after.start);
      }
      this.byStart.delete(after.start);
      this.byEnd.delete(after.end);
      run.end = after.end;
      run.endRow = after.endRow;
    }
    this.byEnd.set(run.end, run);
    if (this.byStart.size > this.maxOpenRuns) {
      this.overflowed = true;
      this.byStart.clear();
      this.byEnd.clear();
    }
  }

  /**
   * The outcome over positions first..last, once every run is in:
   * `priorHash` is what the entry at `first` must link to.
   */
  finish(first: number, last: number, priorHash: Buffer): LinkOutcome {
    if (this.overflowed) {
      throw new Error('the runs overflowed: check the links in position order');
    }
    const runs = [...this.byStart.values()].sort((a, b) => a.start - b.start);
    let firstBroken = this.firstBroken;
    const head = runs[0];
    if (head?.start === first && !head.startPrevious.equals(priorHash)) {
      firstBroken = Math.min(firstBroken, first);
    }
    const tail = runs.at(-1);
    return {
      ...(!head ? {} : head.start > first ? { firstGap: first } : runs.length > 1 ? { firstGap: head.end + 1 } : {}),
      ...(Number.isFinite(firstBroken) ? { firstBroken } : {}),
      ...(!tail ? { missingTailFrom: first } : tail.end < last ? { missingTailFrom: tail.end + 1 } : {}),
    };
  }
}
