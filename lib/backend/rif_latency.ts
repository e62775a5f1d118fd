/**
 * What a server answers a Prequal probe with: its requests in flight (RIF) and the latency a
 * request arriving now should expect. Every request's latency is filed under the RIF it found on
 * arrival; the estimate at a RIF is the median of the latest samples filed there, or of the
 * nearest RIF that has samples (Prequal §3: "the median latency of recent queries at the current
 * RIF"). The backend and the simulator both keep one, so the simulator's probes read what a
 * backend's would.
 *
 * @module
 */

/** RIFs kept apart by default; requests that found more share the last bucket. */
export const DEFAULT_RIF_BUCKETS = 64;
/** Latest samples kept per RIF by default. */
export const DEFAULT_SAMPLES_PER_RIF = 16;

/** Options of {@linkcode RifLatency}. */
export interface RifLatencyOptions {
  /** RIFs kept apart (at least 1). @default {DEFAULT_RIF_BUCKETS} */
  buckets?: number;
  /** Latest samples kept per RIF (at least 1). @default {DEFAULT_SAMPLES_PER_RIF} */
  samplesPerRif?: number;
}

/** A server's requests in flight and the median recent latency at each of them. */
export class RifLatency {
  readonly #buckets: number;
  readonly #per: number;
  /** `#samples[b * per + k]`: bucket `b`'s samples, a ring of `per`. */
  readonly #samples: Float64Array;
  readonly #count: Int32Array;
  readonly #next: Int32Array;
  readonly #scratch: Float64Array;
  #rif = 0;

  /** An estimator with nothing in flight and no samples. */
  constructor(options: RifLatencyOptions = {}) {
    const buckets = options.buckets ?? DEFAULT_RIF_BUCKETS;
    const per = options.samplesPerRif ?? DEFAULT_SAMPLES_PER_RIF;
    if (!Number.isInteger(buckets) || buckets < 1 || !Number.isInteger(per) || per < 1) {
      throw new RangeError(
        `Cannot create RifLatency as 'buckets' and 'samplesPerRif' must be integers >= 1: current values are ${buckets} and ${per}`,
      );
    }
    this.#buckets = buckets;
    this.#per = per;
    this.#samples = new Float64Array(buckets * per);
    this.#count = new Int32Array(buckets);
    this.#next = new Int32Array(buckets);
    this.#scratch = new Float64Array(per);
  }

  /** Requests in flight now (started and not ended). */
  get rif(): number {
    return this.#rif;
  }

  /** A request arrived; returns the RIF it found, to hand back to {@linkcode end}. */
  start(): number {
    return this.#rif++;
  }

  /** The request that found `foundRif` on arrival ended after `latencyMs`. */
  end(foundRif: number, latencyMs: number): void {
    if (this.#rif > 0) this.#rif--;
    const b = Math.min(Math.max(0, foundRif | 0), this.#buckets - 1);
    const at = b * this.#per + this.#next[b];
    this.#samples[at] = latencyMs;
    this.#next[b] = (this.#next[b] + 1) % this.#per;
    if (this.#count[b] < this.#per) this.#count[b]++;
  }

  /**
   * The median of the latest latencies filed at `rif` (default: the RIF now), or at the nearest
   * RIF with samples (the higher one on a tie); `NaN` before any request ended.
   */
  estimateMs(rif: number = this.#rif): number {
    const want = Math.min(Math.max(0, rif | 0), this.#buckets - 1);
    for (let d = 0; d < this.#buckets; d++) {
      const up = want + d;
      if (up < this.#buckets && this.#count[up] > 0) return this.#median(up);
      const down = want - d;
      if (d > 0 && down >= 0 && this.#count[down] > 0) return this.#median(down);
    }
    return NaN;
  }

  #median(b: number): number {
    const n = this.#count[b];
    const s = this.#scratch;
    const base = b * this.#per;
    // Insertion sort of at most `per` samples into the scratch array: no allocation.
    for (let i = 0; i < n; i++) {
      const v = this.#samples[base + i];
      let j = i - 1;
      while (j >= 0 && s[j] > v) {
        s[j + 1] = s[j];
        j--;
      }
      s[j + 1] = v;
    }
    return n % 2 === 1 ? s[n >> 1] : (s[(n >> 1) - 1] + s[n >> 1]) / 2;
  }
}
