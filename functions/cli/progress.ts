/**
 * Progress for people and for logs: on a terminal, one status line redrawn in
 * place under the lines already printed; anywhere else, plain lines only, so a
 * log or a CI transcript never fills with carriage returns and escape codes.
 */
export interface OutputStream {
  write(text: string): boolean;
  isTTY?: boolean;
  columns?: number;
}

const CLEAR_LINE = '\r\x1b[K';
const BAR_WIDTH = 24;

export function formatDuration(seconds: number): string {
  const whole = Math.max(0, Math.round(seconds));
  if (whole < 60) return `${whole}s`;
  if (whole < 3600) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(whole / 3600)}h${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}m`;
}

/** Decimal units, as the registry and the README state sizes. */
export function formatBytes(bytes: number): string {
  if (bytes < 1e6) return `${Math.round(bytes / 1e3)} kB`;
  const megabytes = bytes / 1e6;
  return `${megabytes < 10 ? megabytes.toFixed(1) : Math.round(megabytes)} MB`;
}

export function renderBar(fraction: number, width = BAR_WIDTH): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}]`;
}

/** The bottom line of a terminal, redrawn in place; printed lines go above it. */
export class StatusLine {
  private text: string | null = null;

  constructor(private readonly stream: OutputStream) {}

  show(text: string): void {
    // A pseudo-terminal may report 0 columns.
    const width = Math.max(20, (this.stream.columns || 80) - 1);
    this.text = [...text].length > width ? `${[...text].slice(0, width - 1).join('')}…` : text;
    this.stream.write(`${CLEAR_LINE}${this.text}`);
  }

  print(line: string): void {
    this.stream.write(`${this.text === null ? '' : CLEAR_LINE}${line}\n${this.text ?? ''}`);
  }

  clear(): void {
    if (this.text !== null) this.stream.write(CLEAR_LINE);
    this.text = null;
  }
}

export interface BatchOutcome {
  succeeded: number;
  /** Inputs whose output was already there, passed over as finished work (a resumed run). */
  skipped: number;
  failed: number;
}

/**
 * Reports a batch of removals: `ok in → out (ms)`, `skip in → out (exists)`
 * and `FAILED in: message` lines, plus a bar on a terminal. Inputs that wait to
 * be sent again are counted on the bar; elsewhere each retry is a line, since
 * a log is read afterwards and needs the reason.
 */
export class BatchReporter {
  private readonly status: StatusLine | null;
  private readonly startedAt: number;
  private readonly ticker: NodeJS.Timeout | null;
  private succeededCount = 0;
  private skippedCount = 0;
  private failedCount = 0;
  /** Inputs in progress that needed at least one retry. */
  private readonly retrying = new Set<string>();
  private current = '';

  constructor(
    private readonly stream: OutputStream,
    private readonly total: number,
    private readonly options: { quiet?: boolean; now?: () => number } = {},
  ) {
    this.startedAt = this.now();
    this.status = stream.isTTY && !options.quiet ? new StatusLine(stream) : null;
    // The ETA and rate keep moving during a long inference, not only between images.
    this.ticker = this.status && total > 1 ? setInterval(() => this.redraw(), 1000).unref() : null;
  }

  private now(): number {
    return this.options.now ? this.options.now() : performance.now();
  }

  private get done(): number {
    return this.succeededCount + this.skippedCount + this.failedCount;
  }

  /** Images per second of real work: skipped outputs take no time and would make the ETA a promise the rest cannot keep. */
  private rate(elapsedSeconds: number): number {
    return elapsedSeconds > 0 ? (this.done - this.skippedCount) / elapsedSeconds : 0;
  }

  private print(line: string): void {
    if (this.status) this.status.print(line);
    else this.stream.write(`${line}\n`);
  }

  private redraw(): void {
    if (!this.status || this.total <= 1) return;
    const rate = this.rate((this.now() - this.startedAt) / 1000);
    const eta = rate > 0 ? formatDuration((this.total - this.done) / rate) : '?';
    const failures = this.failedCount > 0 ? `  ${this.failedCount} failed` : '';
    const retries = this.retrying.size > 0 ? `  ${this.retrying.size} retrying` : '';
    this.status.show(
      `${renderBar(this.done / this.total)} ${this.done}/${this.total}  ${rate.toFixed(2)} img/s  ETA ${eta}${failures}${retries}  ${this.current}`,
    );
  }

  started(input: string): void {
    this.current = input;
    this.redraw();
  }

  succeeded(input: string, output: string, milliseconds: number): void {
    this.succeededCount += 1;
    this.retrying.delete(input);
    if (!this.options.quiet) this.print(`ok ${input} → ${output} (${Math.round(milliseconds)} ms)`);
    this.redraw();
  }

  skipped(input: string, output: string): void {
    this.skippedCount += 1;
    if (!this.options.quiet) this.print(`skip ${input} → ${output} (exists)`);
    this.redraw();
  }

  /** The input waits to be sent again; `reason` says why and when. */
  retried(input: string, reason: string): void {
    this.retrying.add(input);
    if (!this.status && !this.options.quiet) this.print(`retry ${input}: ${reason}`);
    this.redraw();
  }

  failed(input: string, message: string): void {
    this.failedCount += 1;
    this.retrying.delete(input);
    this.print(`FAILED ${input}: ${message}`);
    this.redraw();
  }

  get outcome(): BatchOutcome {
    return { succeeded: this.succeededCount, skipped: this.skippedCount, failed: this.failedCount };
  }

  /** Without the summary when the run was cut short: its counts would mislead. */
  finish({ summary = true }: { summary?: boolean } = {}): BatchOutcome {
    if (this.ticker) clearInterval(this.ticker);
    this.status?.clear();
    if (summary && this.total > 1 && !this.options.quiet) {
      const seconds = (this.now() - this.startedAt) / 1000;
      const skipped = this.skippedCount > 0 ? `${this.skippedCount} skipped, ` : '';
      this.stream.write(
        `${this.succeededCount} ok, ${skipped}${this.failedCount} failed, ${this.done} of ${this.total} in ${formatDuration(seconds)}` +
          ` (${this.rate(seconds).toFixed(2)} img/s)\n`,
      );
    }
    return this.outcome;
  }
}

const REDRAW_INTERVAL_MS = 100;

/** A download bar per model on a terminal; nothing per chunk elsewhere. */
export class DownloadReporter {
  private readonly status: StatusLine | null;
  private model = '';
  private startedAt = 0;
  private lastDrawnAt = Number.NEGATIVE_INFINITY;
  private lastReceived = 0;

  constructor(
    private readonly stream: OutputStream,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.status = stream.isTTY ? new StatusLine(stream) : null;
  }

  progress(event: { model: string; receivedBytes: number; totalBytes: number | null }): void {
    if (!this.status) return;
    const time = this.now();
    // A new model, or a retry from another source, starts its own rate.
    if (event.model !== this.model || event.receivedBytes < this.lastReceived) {
      this.model = event.model;
      this.startedAt = time;
      this.lastDrawnAt = Number.NEGATIVE_INFINITY;
    }
    this.lastReceived = event.receivedBytes;
    const finished = event.totalBytes !== null && event.receivedBytes >= event.totalBytes;
    if (!finished && time - this.lastDrawnAt < REDRAW_INTERVAL_MS) return;
    this.lastDrawnAt = time;
    const seconds = (time - this.startedAt) / 1000;
    const rate = seconds > 0 ? event.receivedBytes / seconds : 0;
    const rateText = rate > 0 ? `  ${formatBytes(rate)}/s` : '';
    if (event.totalBytes === null) {
      this.status.show(`${event.model}  ${formatBytes(event.receivedBytes)}${rateText}`);
      return;
    }
    const eta = rate > 0 ? `  ETA ${formatDuration((event.totalBytes - event.receivedBytes) / rate)}` : '';
    this.status.show(
      `${event.model}  ${renderBar(event.receivedBytes / event.totalBytes)} ${formatBytes(event.receivedBytes)} / ${formatBytes(event.totalBytes)}${rateText}${eta}`,
    );
  }

  /** A line printed above the bar (or plainly), e.g. a source that failed before the next is tried. */
  log(line: string): void {
    if (this.status) this.status.print(line);
    else this.stream.write(`${line}\n`);
  }

  finish(): void {
    this.status?.clear();
  }
}
