/**
 * The backend's load as gRPC's own load reports (ORCA, gRFC A51) tell it to any client: out of
 * band on `xds.service.orca.v3.OpenRcaService`, and per call in the trailers of its answers. One
 * sample per interval serves both: CPU utilization, the application's (busy worker slots), and
 * tasks completed and failed per second.
 *
 * The service is defined here with the hand-written encoder of `lib/wire/orca.ts` rather than
 * grpc-js's `ServerMetricRecorder`, which reads its `.proto` files from `node_modules` at run
 * time: a bundled backend has none.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { decodeOrcaRequestInterval, encodeOrcaReport, type OrcaReport } from "../wire/orca.ts";
import type { LoadSampler } from "./load_sampler.ts";

/** Shortest out-of-band interval served: a client asking for less gets one a second. */
export const MIN_OOB_INTERVAL_MS = 1_000;

type OobCall = grpc.ServerWritableStream<number, Readonly<OrcaReport>>;

/** `xds.service.orca.v3.OpenRcaService`, with our encoder of reports. */
const OPEN_RCA_SERVICE: grpc.ServiceDefinition = {
  StreamCoreMetrics: {
    path: "/xds.service.orca.v3.OpenRcaService/StreamCoreMetrics",
    requestStream: false,
    responseStream: true,
    requestSerialize: () => Buffer.alloc(0),
    requestDeserialize: (bytes: Buffer) => decodeOrcaRequestInterval(bytes),
    responseSerialize: (report: OrcaReport) => encodeOrcaReport(report),
    responseDeserialize: () => ({}),
  },
};

/** Samples the backend's load every interval and publishes it as ORCA. */
export class OrcaReports {
  #sampler: LoadSampler;
  #workers: number;
  #emulated: boolean;
  #intervalMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #latest: OrcaReport = {};
  /** Open out-of-band streams, each with its timer. */
  #streams = new Map<OobCall, ReturnType<typeof setInterval>>();

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

  /** Adds `OpenRcaService` to `server`: each stream gets the latest report at its interval. */
  addTo(server: grpc.Server): void {
    server.addService(OPEN_RCA_SERVICE, {
      StreamCoreMetrics: (call: OobCall) => {
        const intervalMs = Math.max(MIN_OOB_INTERVAL_MS, call.request);
        const send = () => call.write(this.#latest);
        send();
        this.#streams.set(call, setInterval(send, intervalMs));
        const end = () => {
          clearInterval(this.#streams.get(call));
          this.#streams.delete(call);
        };
        call.on("cancelled", end);
        call.on("close", end);
        call.on("error", end);
      },
    });
  }

  /** Samples now and then every interval. */
  start(): void {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), this.#intervalMs);
  }

  /** Stops sampling and ends every out-of-band stream (a graceful stop waits for open ones). */
  stop(): void {
    clearInterval(this.#timer);
    for (const [call, timer] of this.#streams) {
      clearInterval(timer);
      call.end();
    }
    this.#streams.clear();
  }

  #sample(): void {
    const load = this.#sampler.sample();
    const cpu = load.cpuLoad / 100;
    const busy = Math.max(0, load.inFlight - load.queueLength);
    this.#latest = {
      cpuUtilization: cpu,
      applicationUtilization: this.#emulated ? cpu : Math.min(1, busy / this.#workers),
      rpsFractional: load.qps,
      eps: load.eps,
    };
  }
}
