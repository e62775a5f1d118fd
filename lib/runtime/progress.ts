/**
 * A progress bar on stderr. On a terminal it redraws one line; elsewhere (CI, a pipe) it
 * prints a line every few seconds, so logs stay readable.
 *
 * @module
 */

const encoder = new TextEncoder();

/** Options of {@linkcode ProgressBar}. */
export interface ProgressBarOptions {
  /** Width of the bar in characters. @default {30} */
  width?: number;
  /** Minimum time between two lines when not on a terminal. @default {5000} */
  plainEveryMs?: number;
  /** Where to write. @default {Deno.stderr} */
  out?: { writeSync(p: Uint8Array): number; isTerminal(): boolean };
}

/** Draws `label [#####.....] 42% detail`. */
export class ProgressBar {
  #width: number;
  #plainEveryMs: number;
  #out: { writeSync(p: Uint8Array): number; isTerminal(): boolean };
  #tty: boolean;
  #lastPlainAt = -Infinity;
  #drawn = false;

  /** Creates a progress bar. */
  constructor(options: ProgressBarOptions = {}) {
    this.#width = options.width ?? 30;
    this.#plainEveryMs = options.plainEveryMs ?? 5_000;
    this.#out = options.out ?? Deno.stderr;
    this.#tty = this.#out.isTerminal();
  }

  /** Shows `fraction` (0 to 1) with a label and a detail text. */
  update(label: string, fraction: number, detail: string): void {
    const f = Math.min(1, Math.max(0, fraction));
    const filled = Math.round(f * this.#width);
    const bar = "#".repeat(filled) + ".".repeat(this.#width - filled);
    const line = `${label} [${bar}] ${String(Math.round(f * 100)).padStart(3)}% ${detail}`;
    if (this.#tty) {
      this.#out.writeSync(encoder.encode(`\r\x1b[2K${line}`));
      this.#drawn = true;
    } else {
      const now = performance.now();
      if (this.#lastPlainAt === Infinity) return; // 100% already printed
      if (f >= 1 || now - this.#lastPlainAt >= this.#plainEveryMs) {
        if (f >= 1) this.#lastPlainAt = Infinity;
        else this.#lastPlainAt = now;
        this.#out.writeSync(encoder.encode(`${line}\n`));
      }
    }
  }

  /** Ends the current line. */
  done(): void {
    if (this.#tty && this.#drawn) this.#out.writeSync(encoder.encode("\n"));
    this.#drawn = false;
    this.#lastPlainAt = -Infinity;
  }
}
