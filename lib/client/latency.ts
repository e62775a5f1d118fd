/**
 * Latency recording with an HDR histogram (`hdr-histogram-js`): constant memory, percentiles
 * accurate to three significant digits, however many requests a run makes. Histograms travel
 * between processes as compressed base64 and merge exactly.
 *
 * @module
 */
import * as hdr from "hdr-histogram-js";

/** Latency percentiles in milliseconds. */
export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

function newHistogram(): hdr.Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 3,
  });
}

/** Records latencies (ms, kept in microseconds) and reports percentiles. */
export class LatencyRecorder {
  #histogram = newHistogram();

  /** A recorder holding the merge of encoded histograms (from {@linkcode encode}). */
  static merge(encoded: string[]): LatencyRecorder {
    const merged = new LatencyRecorder();
    for (const text of encoded) merged.#histogram.add(hdr.decodeFromCompressedBase64(text));
    return merged;
  }

  /** Records one latency in milliseconds. */
  record(ms: number): void {
    this.#histogram.recordValue(Math.max(1, Math.round(ms * 1_000)));
  }

  /** Forgets everything recorded (for a sliding window). */
  reset(): void {
    this.#histogram.reset();
  }

  /** Number of latencies recorded. */
  get count(): number {
    return this.#histogram.totalCount;
  }

  /** The histogram as compressed base64, for another process to merge. */
  encode(): string {
    return hdr.encodeIntoCompressedBase64(this.#histogram);
  }

  /** Percentiles so far, in milliseconds (zeros when nothing was recorded). */
  summary(): LatencySummary {
    const h = this.#histogram;
    if (h.totalCount === 0) return { p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };
    // HDR reports a percentile as the top of its bucket, which can exceed the true maximum.
    const ms = (us: number) => Math.round(Math.min(us, h.maxValue) / 10) / 100;
    return {
      p50: ms(h.getValueAtPercentile(50)),
      p90: ms(h.getValueAtPercentile(90)),
      p99: ms(h.getValueAtPercentile(99)),
      max: ms(h.maxValue),
      mean: ms(h.mean),
    };
  }
}
