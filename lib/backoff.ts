/**
 * Exponential backoff with jitter, with gRPC's connection-backoff defaults.
 *
 * @module
 */

/** Options of {@linkcode Backoff}. */
export interface BackoffOptions {
  /** @default {1000} */
  initialMs?: number;
  /** @default {1.6} */
  multiplier?: number;
  /** Fraction of the delay added or removed at random. @default {0.2} */
  jitter?: number;
  /** @default {120000} */
  maxMs?: number;
  /** @default {Math.random} */
  rng?: () => number;
}

/** Yields growing, jittered delays; {@linkcode reset} after a success. */
export class Backoff {
  #initialMs: number;
  #multiplier: number;
  #jitter: number;
  #maxMs: number;
  #rng: () => number;
  #nextMs: number;

  /** Creates a backoff. */
  constructor(options: BackoffOptions = {}) {
    this.#initialMs = options.initialMs ?? 1_000;
    this.#multiplier = options.multiplier ?? 1.6;
    this.#jitter = options.jitter ?? 0.2;
    this.#maxMs = options.maxMs ?? 120_000;
    this.#rng = options.rng ?? Math.random;
    this.#nextMs = this.#initialMs;
  }

  /** The next delay in ms. */
  next(): number {
    const base = this.#nextMs;
    this.#nextMs = Math.min(this.#maxMs, base * this.#multiplier);
    return Math.max(0, base * (1 + this.#jitter * (2 * this.#rng() - 1)));
  }

  /** Starts again from the initial delay. */
  reset(): void {
    this.#nextMs = this.#initialMs;
  }
}
