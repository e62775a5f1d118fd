/**
 * Measures what a backend reports as its load: `process` (the default) is this process's CPU
 * time, every worker included, as a share of the machine, so backends sharing a machine each
 * report their own; `loadavg` (the design card's choice) is the one-minute load average over the
 * cores, machine-wide and smoothed, so right only where each backend has a machine of its own.
 *
 * @module
 */
import process from "node:process";

/** Accepted by the backend's `--load-source`. */
export const LOAD_SOURCES = ["process", "loadavg"] as const;
/** A load source. */
export type LoadSource = typeof LOAD_SOURCES[number];

/** A load figure measured between calls, such as CPU use or busy slots. */
export interface LoadMeter {
  /** The load since the previous call (or since creation), in percent, 0 to 100. */
  sample(): number;
}

/** Samples this process's CPU use between calls. */
export class CpuMeter implements LoadMeter {
  #last = process.cpuUsage();
  #lastAtMs = performance.now();
  #cores: number;

  /** Creates a meter; `cores` defaults to the machine's logical CPU count. */
  constructor(cores = navigator.hardwareConcurrency || 1) {
    this.#cores = cores;
  }

  /** CPU use since the previous call (or since creation), in percent of the machine, 0 to 100. */
  sample(): number {
    const now = performance.now();
    const usage = process.cpuUsage(this.#last);
    this.#last = process.cpuUsage();
    const elapsedUs = (now - this.#lastAtMs) * 1_000;
    this.#lastAtMs = now;
    if (elapsedUs <= 0) return 0;
    return clampPercent(((usage.user + usage.system) / (elapsedUs * this.#cores)) * 100);
  }
}

/** The one-minute load average over the core count, in percent, 0 to 100. */
export function loadavgPercent(cores = navigator.hardwareConcurrency || 1): number {
  return clampPercent((Deno.loadavg()[0] / cores) * 100);
}

function clampPercent(value: number): number {
  return Number.isFinite(value) ? Math.min(100, Math.max(0, value)) : 0;
}
