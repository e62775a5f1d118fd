/**
 * The simulator's summaries: latency percentiles of the measured requests, and the test of a
 * server whose queue grows without bound (a least-squares slope of its queue length, sampled at
 * its load reports over the second half of the arrivals).
 *
 * @module
 */

/** Latency figures of a run, in ms. */
export interface LatencySummary {
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
}

/** Mean and percentiles (nearest rank) of `values`; sorts a copy. */
export function summarize(values: Float64Array): LatencySummary {
  const sorted = values.slice().sort();
  const n = sorted.length;
  if (n === 0) return { mean: NaN, p50: NaN, p90: NaN, p99: NaN, p999: NaN };
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i];
  const at = (q: number) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))];
  return { mean: sum / n, p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999) };
}

/**
 * Least growth counted as unbounded, in requests, besides the share of the requests sent: a
 * stable queue wanders by a few tens of requests.
 */
export const OVERLOAD_MIN_GROWTH = 20;
/** Least growth counted as unbounded, as a share of the requests sent over the same window. */
export const OVERLOAD_GROWTH_SHARE = 0.02;

/** Accumulates each server's queue samples over a window and fits their trend. */
export class QueueTrend {
  readonly #n: Float64Array;
  readonly #st: Float64Array;
  readonly #sq: Float64Array;
  readonly #stq: Float64Array;
  readonly #stt: Float64Array;
  readonly #first: Float64Array;
  readonly #last: Float64Array;
  /** Requests sent to each server over the window. */
  readonly sent: Float64Array;

  /** Tracks `servers` servers. */
  constructor(servers: number) {
    this.#n = new Float64Array(servers);
    this.#st = new Float64Array(servers);
    this.#sq = new Float64Array(servers);
    this.#stq = new Float64Array(servers);
    this.#stt = new Float64Array(servers);
    this.#first = new Float64Array(servers).fill(NaN);
    this.#last = new Float64Array(servers);
    this.sent = new Float64Array(servers);
  }

  /** Server `server` holds `requests` at `timeS` (seconds from the window's start). */
  sample(server: number, timeS: number, requests: number): void {
    this.#n[server]++;
    this.#st[server] += timeS;
    this.#sq[server] += requests;
    this.#stq[server] += timeS * requests;
    this.#stt[server] += timeS * timeS;
    if (Number.isNaN(this.#first[server])) this.#first[server] = timeS;
    this.#last[server] = timeS;
  }

  /** How much server `server`'s queue grew over the window, by its fitted trend (requests). */
  growth(server: number): number {
    const n = this.#n[server];
    if (n < 3) return 0;
    const st = this.#st[server];
    const denominator = n * this.#stt[server] - st * st;
    if (denominator <= 0) return 0;
    const slope = (n * this.#stq[server] - st * this.#sq[server]) / denominator;
    return slope * (this.#last[server] - this.#first[server]);
  }

  /** Whether server `server`'s queue grew without bound over the window. */
  overloaded(server: number): boolean {
    return this.growth(server) >
      Math.max(OVERLOAD_MIN_GROWTH, OVERLOAD_GROWTH_SHARE * this.sent[server]);
  }
}
