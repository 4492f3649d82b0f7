/** Where a progress bar writes: a terminal stream (isTTY, columns) or any writable. */
export interface ProgressOutput {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface ProgressBarOptions {
  /** Default process.stdout. */
  output?: ProgressOutput;
  /** Text before the bar, e.g. the batch id. */
  label?: string;
  /** Forces the terminal (true) or plain-line (false) rendering; default output.isTTY. */
  tty?: boolean;
  /** Plain-line mode: at most one line per this many ms (the final state is always written). Default 1000. */
  lineIntervalMs?: number;
  /** Clock (ms), for tests of the throttling. */
  now?: () => number;
}

export interface ProgressUpdate {
  done: number;
  /** 0 or less means unknown: no bar, no percentage. */
  total: number;
  /** Extra facts after the counts, e.g. "ok 10 skipped 2". */
  detail?: string;
  /** Seconds to completion, when known. */
  etaSeconds?: number;
}

const FULL = '█';
const EMPTY = '░';
/** Room kept for the counts and details after the bar. */
const TEXT_ALLOWANCE = 60;

/** `1:02:03` / `2:03` / `0:05`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

const count = (n: number) => n.toLocaleString('en-US');

/**
 * A one-line progress bar for CLI commands (batch watch, audit export/verify). On a terminal it
 * redraws one line in place (`\r`, clear to end of line) sized to the terminal width; anywhere
 * else (a pipe, a file, CI logs) it degrades to plain, throttled lines without control
 * characters, so logs stay readable.
 */
export class ProgressBar {
  private readonly output: ProgressOutput;
  private readonly tty: boolean;
  private readonly lineIntervalMs: number;
  private readonly now: () => number;
  private lastLineAt = -Infinity;
  private lastText = '';
  private drawn = false;
  private finished = false;

  constructor(private readonly options: ProgressBarOptions = {}) {
    this.output = options.output ?? process.stdout;
    this.tty = options.tty ?? this.output.isTTY === true;
    this.lineIntervalMs = options.lineIntervalMs ?? 1000;
    this.now = options.now ?? Date.now;
  }

  /** Shows the new state (redraw on a terminal; a line at most every lineIntervalMs otherwise). */
  update(progress: ProgressUpdate): void {
    if (this.finished) return;
    if (this.tty) {
      this.output.write(`\r${this.render(progress, this.width())}\x1b[K`);
      this.drawn = true;
      return;
    }
    const text = this.render(progress, 0);
    const at = this.now();
    if (text === this.lastText || at - this.lastLineAt < this.lineIntervalMs) {
      this.pending = progress;
      return;
    }
    this.writeLine(text, at);
  }

  /** Writes the final state (always) and a closing message; later updates are ignored. */
  finish(progress?: ProgressUpdate, message?: string): void {
    if (this.finished) return;
    const last = progress ?? this.pending;
    if (this.tty) {
      if (last) this.output.write(`\r${this.render(last, this.width())}\x1b[K`);
      if (last || this.drawn) this.output.write('\n');
    } else if (last) {
      const text = this.render(last, 0);
      if (text !== this.lastText) this.writeLine(text, this.now());
    }
    this.finished = true;
    if (message) this.output.write(`${message}\n`);
  }

  private pending?: ProgressUpdate;

  private writeLine(text: string, at: number): void {
    this.output.write(`${text}\n`);
    this.lastText = text;
    this.lastLineAt = at;
    this.pending = undefined;
  }

  private width(): number {
    return Math.max(20, (this.output.columns ?? 80) - 1);
  }

  /** The line for a state; `width` > 0 adds a bar filling what the text leaves of it. */
  render(p: ProgressUpdate, width: number): string {
    const known = p.total > 0;
    const ratio = known ? Math.min(1, Math.max(0, p.done / p.total)) : 0;
    const label = this.options.label ? `${this.options.label} ` : '';
    const counts = known ? `${(ratio * 100).toFixed(1).padStart(5)}% ${count(p.done)}/${count(p.total)}` : count(p.done);
    const tail = [counts, p.detail, p.etaSeconds !== undefined ? `ETA ${formatDuration(p.etaSeconds)}` : undefined].filter(Boolean).join('  ');
    if (width <= 0 || !known) return `${label}${tail}`;
    // A steady bar (its width does not follow the text), dropped when the terminal is too narrow.
    const barWidth = Math.min(30, width - label.length - 3 - TEXT_ALLOWANCE);
    if (barWidth < 10) return `${label}${tail}`.slice(0, width);
    const filled = Math.round(ratio * barWidth);
    return `${label}[${FULL.repeat(filled)}${EMPTY.repeat(barWidth - filled)}] ${tail}`.slice(0, width);
  }
}
