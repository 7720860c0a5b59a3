/**
 * Progress of a long run: on a terminal, one bar redrawn in place (done of
 * total, rate, ETA, and counters of other work); elsewhere (a pipe, a file,
 * CI) a plain line every few seconds, so a log stays readable.
 */

export interface ProgressCounter {
  readonly label: string;
  done: number;
  total: number;
}

export interface ProgressOptions {
  /** Where to draw: process.stderr, so that standard output keeps only the report. */
  readonly stream: NodeJS.WriteStream;
  /** What the bar counts (`readings`). */
  readonly unit: string;
  /** Plain lines: at most one per this many ms. */
  readonly lineIntervalMs?: number;
  /** Bar: redrawn at most this often. */
  readonly redrawIntervalMs?: number;
}

const BAR_WIDTH = 28;

export function formatCount(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) {
    return '?';
  }
  const seconds = Math.max(0, Math.round(ms / 1_000));
  if (seconds < 60) {
    return `${seconds}s`;
  }
  const minutes = Math.floor(seconds / 60);
  return minutes < 60 ? `${minutes}m${String(seconds % 60).padStart(2, '0')}s` : `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

export class Progress {
  /** The bar's own count: done of total; `skipped` were found done and count for neither rate nor ETA. */
  done = 0;
  total = 0;
  skipped = 0;
  private readonly counters: ProgressCounter[] = [];
  private readonly startedAt = performance.now();
  /** Recent (time, done) samples: the rate is measured over the last few seconds, not since the start. */
  private samples: { at: number; done: number }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lastLineAt = 0;
  private readonly tty: boolean;
  private drawn = false;
  private phase = '';

  constructor(private readonly options: ProgressOptions) {
    this.tty = Boolean(options.stream.isTTY) && process.env.TERM !== 'dumb';
  }

  counter(label: string, total = 0): ProgressCounter {
    const counter = { label, done: 0, total };
    this.counters.push(counter);
    return counter;
  }

  /** What is happening now, shown before the bar (`checking`, `writing`). */
  setPhase(phase: string): void {
    this.phase = phase;
    if (this.timer && phase) {
      this.tick(true);
    }
  }

  start(): void {
    const interval = this.tty ? (this.options.redrawIntervalMs ?? 200) : 1_000;
    this.timer = setInterval(() => this.tick(false), interval);
    this.timer.unref();
    this.tick(true);
  }

  /** Stops redrawing; the bar's last state stays on its line. */
  stop(): void {
    clearInterval(this.timer);
    this.render(true);
    if (this.tty && this.drawn) {
      this.options.stream.write('\n');
    }
  }

  /** Items per second over the last ~5 s. */
  rate(): number {
    const now = performance.now();
    const fresh = this.done - this.skipped;
    this.samples.push({ at: now, done: fresh });
    while (this.samples.length > 2 && now - (this.samples[0]?.at ?? now) > 5_000) {
      this.samples.shift();
    }
    const oldest = this.samples[0] ?? { at: now, done: fresh };
    const seconds = (now - oldest.at) / 1_000;
    return seconds > 0.5 ? (fresh - oldest.done) / seconds : fresh / Math.max((now - this.startedAt) / 1_000, 0.001);
  }

  private tick(force: boolean): void {
    const now = performance.now();
    if (this.tty || force || now - this.lastLineAt >= (this.options.lineIntervalMs ?? 5_000)) {
      this.render(false);
    }
  }

  private render(final: boolean): void {
    this.lastLineAt = performance.now();
    const rate = this.rate();
    const remaining = this.total - this.done;
    const eta = remaining <= 0 ? 0 : rate > 0 ? (remaining / rate) * 1_000 : Number.POSITIVE_INFINITY;
    const fraction = this.total > 0 ? Math.min(1, this.done / this.total) : 1;
    const percent = `${Math.floor(fraction * 100)}%`;
    const counters = this.counters.map((counter) => `${counter.label} ${formatCount(counter.done)}/${formatCount(counter.total)}`).join(' | ');
    const timing = final ? `elapsed ${formatDuration(performance.now() - this.startedAt)}` : `${formatCount(rate)}/s, ETA ${formatDuration(eta)}`;
    if (this.tty) {
      const filled = Math.round(fraction * BAR_WIDTH);
      const bar = `${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}`;
      const line = `${this.phase ? `${this.phase} ` : ''}${bar} ${percent} ${formatCount(this.done)}/${formatCount(this.total)} ${this.options.unit}, ${timing}${counters ? ` | ${counters}` : ''}`;
      const columns = this.options.stream.columns || 160;
      this.options.stream.write(`\r\x1b[2K${line.slice(0, columns - 1)}`);
      this.drawn = true;
    } else {
      this.options.stream.write(
        `seed: ${this.phase ? `${this.phase}: ` : ''}${this.options.unit} ${formatCount(this.done)}/${formatCount(this.total)} (${percent}), ${timing}${counters ? `; ${counters}` : ''}\n`,
      );
    }
  }

  /** A line of its own (a warning), without breaking the bar. */
  note(text: string): void {
    if (this.tty && this.drawn) {
      this.options.stream.write(`\r\x1b[2K${text}\n`);
      this.render(false);
    } else {
      this.options.stream.write(`seed: ${text}\n`);
    }
  }
}
