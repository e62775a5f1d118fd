/**
 * A backend's load reports to the balancer, every interval. In built-in discovery the backend
 * first registers with `RegisterServer`, and registers again whenever the balancer answers a
 * report with NOT_FOUND (the balancer restarted, or dropped it after a pause), so it heals by
 * itself.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { getLogger } from "@logtape/logtape";
import { withToken } from "../wire/auth.ts";
import { retryDelayMs } from "../wire/backoff.ts";
import type { LoadMeter, LoadSource } from "./cpu_meter.ts";
import { LoadSampler, type TaskCounts } from "./load_sampler.ts";
import { createLoadBalancerClient, type LoadBalancerClient, unary } from "../wire/proto.ts";
import { statusName } from "../wire/status.ts";
import { channelCredentials, type TlsConfig } from "../wire/tls.ts";

const log = getLogger(["lb", "reporter"]);

/** Default time between two load reports. */
export const DEFAULT_REPORT_INTERVAL_MS = 1_000;

/** Options of {@linkcode LoadReporter}. */
export interface LoadReporterOptions {
  /** Balancer `host:port`. */
  balancer: string;
  /** This backend's advertised `host:port`. */
  address: string;
  /** @default {DEFAULT_REPORT_INTERVAL_MS} */
  intervalMs?: number;
  /** What `cpu_load` carries. @default {"process"} */
  source?: LoadSource;
  /**
   * What `cpu_load` carries in place of `source`: busy slots, for a backend that emulates its
   * tasks and so uses next to no CPU. One meter per reporter, as each samples since its last
   * call. @default {none}
   */
  meter?: LoadMeter;
  /** Call `RegisterServer` first and after NOT_FOUND (built-in discovery). */
  register: boolean;
  /** Current in-flight and queued task counts, and tasks completed and failed so far. */
  tasks: () => TaskCounts;
  /** TLS to the balancer. @default {plaintext} */
  tls?: TlsConfig;
  /** Control-plane token sent with every report and registration. */
  token?: string;
}

/** Reports load on a timer until stopped. */
export class LoadReporter {
  #options: LoadReporterOptions;
  #client: LoadBalancerClient;
  #sampler: LoadSampler;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #registered = false;
  #failing = false;
  #failures = 0;
  #intervalMs: number;

  /** Creates a reporter; {@linkcode start} begins reporting. */
  constructor(options: LoadReporterOptions) {
    this.#options = options;
    this.#intervalMs = options.intervalMs ?? DEFAULT_REPORT_INTERVAL_MS;
    this.#sampler = new LoadSampler(options);
    // Reports are heartbeats in built-in discovery: after the balancer was down, the channel
    // must not sit in grpc-js's default reconnect backoff (up to 120 s) while the TTL runs out.
    this.#client = createLoadBalancerClient(
      options.balancer,
      channelCredentials(options.tls),
      undefined,
      withToken({
        "grpc.initial_reconnect_backoff_ms": 250,
        "grpc.max_reconnect_backoff_ms": 5_000,
      }, options.token),
    );
  }

  /** Starts reporting (registering first in built-in discovery). */
  start(): void {
    this.#schedule(0);
  }

  /** Stops reporting and closes the channel. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#client.close();
  }

  #retryDelayMs(): number {
    return retryDelayMs(this.#failures++, { initialMs: 250, maxMs: 5_000 });
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => this.#tick(), delayMs);
  }

  async #tick(): Promise<void> {
    const deadline = Date.now() + Math.max(500, this.#intervalMs);
    let justRegistered = false;
    try {
      if (this.#options.register && !this.#registered) {
        await unary(this.#client.RegisterServer, this.#client, {
          server_address: this.#options.address,
        }, { deadline });
        this.#registered = true;
        justRegistered = true;
        log.info("Registered {address} with balancer {balancer}", {
          address: this.#options.address,
          balancer: this.#options.balancer,
        });
      }
      const load = this.#sampler.sample();
      await unary(this.#client.ReportLoad, this.#client, {
        server_address: this.#options.address,
        cpu_load: load.cpuLoad,
        in_flight: load.inFlight,
        queue_length: load.queueLength,
        loadavg_percent: load.loadavgPercent,
        qps: load.qps,
        eps: load.eps,
      }, { deadline });
      if (this.#failing) {
        log.info("Load reports of {address} accepted again by {balancer}", {
          address: this.#options.address,
          balancer: this.#options.balancer,
        });
      }
      this.#failing = false;
      this.#failures = 0;
      this.#schedule(this.#intervalMs);
    } catch (error) {
      if (this.#stopped) return;
      const code = (error as grpc.ServiceError).code;
      if (code === grpc.status.NOT_FOUND && this.#options.register) {
        // The balancer forgot us (restart, or a pause past its TTL): register again at once.
        this.#registered = false;
        log.warn("Balancer does not know {address}; registering again", {
          address: this.#options.address,
        });
        this.#schedule(justRegistered ? this.#retryDelayMs() : 0);
        return;
      }
      if (!this.#failing) {
        log.warn("Load report of {address} to {balancer} failed ({code}): {reason}", {
          address: this.#options.address,
          balancer: this.#options.balancer,
          code: statusName(code),
          reason: (error as Error).message,
        });
      }
      this.#failing = true;
      this.#schedule(Math.min(this.#intervalMs, this.#retryDelayMs()));
    }
  }
}
