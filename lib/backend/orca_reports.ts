/**
 * The backend's load as gRPC's own load reports (ORCA, gRFC A51) tell it to any client: out of
 * band on `xds.service.orca.v3.OpenRcaService` (grpc-js's `ServerMetricRecorder`), and per call
 * in the trailers of its answers. One sample per interval serves both: CPU utilization, the
 * application's (busy worker slots), and tasks completed and failed per second.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { OrcaReport } from "../wire/orca.ts";
import type { LoadSampler } from "./load_sampler.ts";

/** Samples the backend's load every interval and publishes it as ORCA. */
export class OrcaReports {
  #recorder = new grpc.ServerMetricRecorder();
  #sampler: LoadSampler;
  #workers: number;
  #emulated: boolean;
  #intervalMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #latest: OrcaReport = {};

  /**
   * Publishes what `sampler` measures; `workers` slots run the tasks, and with `emulated` the
   * sampler's CPU figure is their busy share already.
   */
  constructor(options: {
    sampler: LoadSampler;
    workers: number;
    emulated: boolean;
    intervalMs: number;
  }) {
    this.#sampler = options.sampler;
    this.#workers = options.workers;
    this.#emulated = options.emulated;
    this.#intervalMs = options.intervalMs;
  }

  /** The latest sample's report (empty before {@linkcode start}). */
  get latest(): Readonly<OrcaReport> {
    return this.#latest;
  }

  /** Adds `OpenRcaService` (out-of-band reports, at the interval each client asks) to `server`. */
  addTo(server: grpc.Server): void {
    this.#recorder.addToServer(server);
  }

  /** Samples now and then every interval. */
  start(): void {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), this.#intervalMs);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #sample(): void {
    const load = this.#sampler.sample();
    const cpu = load.cpuLoad / 100;
    const busy = Math.max(0, load.inFlight - load.queueLength);
    const application = this.#emulated ? cpu : Math.min(1, busy / this.#workers);
    this.#latest = {
      cpuUtilization: cpu,
      applicationUtilization: application,
      rpsFractional: load.qps,
      eps: load.eps,
    };
    this.#recorder.setCpuUtilizationMetric(cpu);
    this.#recorder.setApplicationUtilizationMetric(application);
    this.#recorder.setQpsMetric(load.qps);
    this.#recorder.setEpsMetric(load.eps);
  }
}
