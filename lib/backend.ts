/**
 * The backend process: serves `Backend.ProcessTask`, runs CPU-heavy tasks on a worker pool,
 * registers in etcd (or with the balancer, in built-in discovery) and reports its load.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import { getLogger } from "@logtape/logtape";
import type { Etcd3 } from "etcd3";
import type { EtcdSecurity } from "./etcd.ts";
import { createBackendHandlers, type TaskCounters } from "./backend_service.ts";
import type { LoadSource } from "./cpu_meter.ts";
import type { EtcdRegistration } from "./etcd_registration.ts";
import { loadEtcd } from "./etcd_loader.ts";
import { HealthService } from "./health.ts";
import { healthRoute, HttpServer, type Route } from "./http_server.ts";
import { LoadReporter } from "./load_reporter.ts";
import { type BackendMetrics, createBackendMetrics, metricsRoute } from "./metrics.ts";
import { contract } from "./proto.ts";
import { addReflection } from "./reflection.ts";
import { bindServer, createServer, shutdownServer } from "./server.ts";
import type { TlsConfig } from "./tls.ts";
import { WorkerPool } from "./worker_pool.ts";

const log = getLogger(["lb", "backend"]);

/** Health service name of a backend (besides `""`, the whole process). */
export const BACKEND_SERVICE_NAME = "load_balancer.Backend";

/** Options of {@linkcode Backend}. */
export interface BackendOptions {
  host: string;
  port: number;
  /** Balancer `host:port` to report load to (and register with, without etcd). */
  balancer?: string;
  /** etcd registration; without it the backend registers with the balancer. */
  etcd?: { endpoints: string[]; prefix: string; ttlS: number; security?: EtcdSecurity };
  workers: number;
  /** Work units per CPU-heavy task, before the slowdown. */
  workUnits: number;
  /** Multiplies the heavy work, to run slower servers on one machine. */
  slowdown: number;
  reportIntervalMs: number;
  loadSource: LoadSource;
  /**
   * TLS of its server, and of its reports to the balancer (trusting `caPem`, showing `certPem`
   * to a balancer that asks). @default {plaintext}
   */
  tls?: TlsConfig;
  /** Control-plane token sent with its reports and registration. */
  token?: string;
  /** Serve HTTP (`/metrics`, `/health`) here; off when absent. */
  http?: { host: string; port: number };
  /** Largest request accepted, in bytes; larger ones answer RESOURCE_EXHAUSTED. @default {DEFAULT_MAX_MESSAGE_BYTES} */
  maxMessageBytes?: number;
}

/** A running backend. */
export class Backend {
  #options: BackendOptions;
  #server: grpc.Server;
  #pool: WorkerPool;
  #etcd: Etcd3 | undefined;
  #registration: EtcdRegistration | undefined;
  #reporter: LoadReporter | undefined;
  #draining = false;
  #health = new HealthService(["", BACKEND_SERVICE_NAME]);
  #http: HttpServer | undefined;
  #httpPort = 0;
  #counters: TaskCounters = { simple: 0, heavy: 0, failed: 0 };
  #address = "";
  #metrics: BackendMetrics;

  /** Builds the backend; {@linkcode start} serves it. */
  constructor(options: BackendOptions) {
    this.#options = options;
    this.#server = createServer(options.maxMessageBytes);
    this.#pool = new WorkerPool(options.workers);
    this.#metrics = createBackendMetrics(this.#pool);
  }

  /** The advertised `host:port` (after {@linkcode start}). */
  get address(): string {
    return this.#address;
  }

  /** The HTTP port (after {@linkcode start}; 0 without `http`). */
  get httpPort(): number {
    return this.#httpPort;
  }

  /** The HTTP routes: one line per concept, each built in its own module. */
  #routes(): Record<string, Route> {
    return {
      "/health": healthRoute(() => this.#health.status() === "SERVING"),
      "/metrics": metricsRoute(this.#metrics.registry),
    };
  }

  /** Serves, then registers and starts reporting. Resolves with the advertised address. */
  async start(): Promise<string> {
    const o = this.#options;
    const port = await bindServer(this.#server, o.host, o.port, o.tls);
    this.#address = `${o.host.includes(":") ? `[${o.host}]` : o.host}:${port}`;
    this.#server.addService(
      contract.Backend.service,
      createBackendHandlers({
        address: this.#address,
        pool: this.#pool,
        workUnits: o.workUnits * o.slowdown,
        draining: () => this.#draining,
        counters: this.#counters,
        metrics: this.#metrics,
      }),
    );
    this.#health.addTo(this.#server);
    addReflection(this.#server, ["load_balancer.Backend", "grpc.health.v1.Health"]);
    this.#health.setAll("SERVING");
    if (o.http) {
      this.#http = new HttpServer({ ...o.http, routes: this.#routes() });
      this.#httpPort = await this.#http.start();
    }
    if (o.etcd) {
      const { createEtcdClient, EtcdRegistration } = await loadEtcd();
      this.#etcd = createEtcdClient(o.etcd.endpoints, { security: o.etcd.security });
      this.#registration = new EtcdRegistration({
        client: this.#etcd,
        prefix: o.etcd.prefix,
        address: this.#address,
        ttlS: o.etcd.ttlS,
        value: JSON.stringify({ address: this.#address, workers: o.workers }),
      });
      await this.#registration.start();
    }
    if (o.balancer) {
      this.#reporter = new LoadReporter({
        balancer: o.balancer,
        address: this.#address,
        intervalMs: o.reportIntervalMs,
        source: o.loadSource,
        register: !o.etcd,
        tls: o.tls,
        token: o.token,
        tasks: () => ({
          inFlight: this.#pool.inFlight,
          queueLength: this.#pool.queueLength,
          completed: this.#counters.simple + this.#counters.heavy,
          failed: this.#counters.failed,
        }),
      });
      this.#reporter.start();
    }
    log.info("Backend {address} serving with {workers} worker(s), slowdown {slowdown}", {
      address: this.#address,
      workers: o.workers,
      slowdown: o.slowdown,
    });
    if (this.#http) {
      log.info("Backend {address} HTTP (/metrics, /health) on http://{host}:{port}/", {
        address: this.#address,
        host: o.http!.host,
        port: this.#httpPort,
      });
    }
    return this.#address;
  }

  /**
   * Drains: reports NOT_SERVING and deregisters from etcd first (so the balancer stops naming
   * it), stops reporting, finishes in-flight tasks (up to `graceMs`), then closes everything.
   */
  async stop(graceMs = 10_000): Promise<void> {
    log.info("Backend {address} draining", { address: this.#address });
    this.#health.setAll("NOT_SERVING");
    await this.#registration?.stop();
    this.#reporter?.stop();
    this.#draining = true;
    this.#health.close();
    await this.#http?.stop();
    await shutdownServer(this.#server, graceMs);
    this.#pool.close();
    this.#etcd?.close();
    log.info("Backend {address} stopped", { address: this.#address });
  }
}
