/**
 * Progress for long commands (pack now; train and eval next). On a terminal: one line redrawn in place on
 * stderr, `label [#####-----] done/total unit  rate  ETA m:ss`; elsewhere (a log file, CI): one plain line
 * every `every` seconds and at the end, so logs stay readable. The caller says what "done" counts and which
 * extra figures to show (`extra`, e.g. "3.1 MB/s").
 */
export interface ProgressOptions {
  label: string;
  unit: string;
  /** Seconds between plain lines when not on a terminal. Default 10. */
  every?: number;
  stream?: NodeJS.WriteStream;
  /** Force terminal (true) or plain (false) output; default: the stream's isTTY. */
  tty?: boolean;
}

export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "?";
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  const ss = String(Math.floor(s % 60)).padStart(2, "0");
  return h > 0 ? `${h}:${String(m % 60).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

export class Progress {
  private readonly t0 = performance.now();
  private lastPlain = 0;
  private drawn = false;
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;

  constructor(private readonly o: ProgressOptions) {
    this.stream = o.stream ?? process.stderr;
    this.tty = o.tty ?? this.stream.isTTY === true;
  }

  /** Whether the line is redrawn in place (a terminal) rather than printed every few seconds. */
  get isTty(): boolean {
    return this.tty;
  }

  get elapsed(): number {
    return (performance.now() - this.t0) / 1e3;
  }

  /** The line for `done` of `total`, with extra figures. */
  line(done: number, total: number, extra = ""): string {
    const t = this.elapsed;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const eta = done > 0 ? (t * (total - done)) / done : Number.NaN;
    const width = 24, fill = Math.round(frac * width);
    const bar = this.tty ? ` [${"#".repeat(fill)}${"-".repeat(width - fill)}]` : "";
    const pct = `${(frac * 100).toFixed(0).padStart(3)}%`;
    return `${this.o.label}${bar} ${pct} ${done.toLocaleString("en-US")}/${total.toLocaleString("en-US")} ${this.o.unit}${extra ? `  ${extra}` : ""}  elapsed ${formatDuration(t)}  ETA ${done >= total ? "0:00" : formatDuration(eta)}`;
  }

  update(done: number, total: number, extra = ""): void {
    if (this.tty) {
      this.stream.write(`\r\x1b[2K${this.line(done, total, extra)}`);
      this.drawn = true;
      return;
    }
    const now = this.elapsed;
    if (now - this.lastPlain >= (this.o.every ?? 10)) {
      this.lastPlain = now;
      this.stream.write(`${this.line(done, total, extra)}\n`);
    }
  }

  /** The final line (always printed), ending the redrawn one on a terminal. */
  done(done: number, total: number, extra = ""): void {
    this.stream.write(`${this.tty ? "\r\x1b[2K" : ""}${this.line(done, total, extra)}\n`);
    this.drawn = false;
  }

  /** Print a message without breaking the redrawn line. */
  log(msg: string): void {
    this.stream.write(`${this.tty && this.drawn ? "\r\x1b[2K" : ""}${msg}\n`);
  }
}
