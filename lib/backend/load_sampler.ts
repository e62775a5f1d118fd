/**
 * What a backend tells of its load, measured between two samples: CPU use (or busy emulated
 * slots), tasks in flight and queued, and tasks completed and failed per second. Load reports to
 * the balancer and ORCA reports to any gRPC client take theirs from one of these each.
 *
 * @module
 */
import { CpuMeter, loadavgPercent, type LoadMeter, type LoadSource } from "./cpu_meter.ts";

/** Task counts as the backend keeps them. */
export interface TaskCounts {
  inFlight: number;
  queueLength: number;
  completed: number;
  failed: number;
}

/** One sample of a backend's load. */
export interface LoadSample {
  /** CPU use in percent of the machine (busy slots when emulated; loadavg with that source). */
  cpuLoad: number;
  /** The machine's one-minute load average over its cores, in percent. */
  loadavgPercent: number;
  inFlight: number;
  queueLength: number;
  /** Tasks completed per second since the previous sample. */
  qps: number;
  /** Tasks failed per second since the previous sample. */
  eps: number;
}

/** Samples a backend's load since its previous sample. */
export class LoadSampler {
  #tasks: () => TaskCounts;
  #meter: LoadMeter;
  #loadavgAsCpu: boolean;
  #last: { completed: number; failed: number; atMs: number };

  /**
   * Samples `tasks` and `meter` (this process's CPU use when absent; with `source` `"loadavg"`
   * and no meter, the load average stands for CPU use).
   */
  constructor(options: { tasks: () => TaskCounts; meter?: LoadMeter; source?: LoadSource }) {
    this.#tasks = options.tasks;
    this.#meter = options.meter ?? new CpuMeter();
    this.#loadavgAsCpu = options.source === "loadavg" && options.meter === undefined;
    const { completed, failed } = options.tasks();
    this.#last = { completed, failed, atMs: performance.now() };
  }

  /** The load since the previous call (or since creation). */
  sample(): LoadSample {
    const { inFlight, queueLength, completed, failed } = this.#tasks();
    const loadavg = loadavgPercent();
    const cpu = this.#meter.sample();
    const now = performance.now();
    const seconds = Math.max(0.001, (now - this.#last.atMs) / 1_000);
    const qps = (completed - this.#last.completed) / seconds;
    const eps = (failed - this.#last.failed) / seconds;
    this.#last = { completed, failed, atMs: now };
    return {
      cpuLoad: this.#loadavgAsCpu ? loadavg : cpu,
      loadavgPercent: loadavg,
      inFlight,
      queueLength,
      qps,
      eps,
    };
  }
}
