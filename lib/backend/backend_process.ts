/**
 * The backend process: serves `Backend.ProcessTask`, runs CPU-heavy tasks on a worker pool (or
 * emulates them on slots, with `emulation`), registers in etcd (or with the balancer, in built-in discovery) and reports its load.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { getLogger } from "@logtape/logtape";
import { advertisedAddress } from "../wire/address.ts";
import type { Etcd3 } from "etcd3";
import type { EtcdSecurity } from "../etcd/etcd_client.ts";
import { createBackendHandlers, type TaskCounters } from "./backend_service.ts";
import { BalancerFollower, DEFAULT_BALANCER_PREFIX } from "../etcd/balancer_registry.ts";
import type { LoadSource } from "./cpu_meter.ts";
import type { EtcdRegistration } from "../etcd/etcd_registration.ts";
import { loadEtcd } from "../etcd/etcd_loader.ts";
import { HealthService } from "../wire/grpc_health.ts";
import {
  encodeOrcaReport,
  LATENCY_METRIC,
  ORCA_TRAILER,
  type OrcaReport,
  RIF_METRIC,
} from "../wire/orca.ts";
import { LoadSampler, type TaskCounts } from "./load_sampler.ts";
import { OrcaReports } from "./orca_reports.ts";
import { RifLatency } from "./rif_latency.ts";
import { healthRoute, HttpServer, type Route } from "../ops/http_server.ts";
import { LoadReporter } from "./load_reporter.ts";
import { type BackendMetrics, createBackendMetrics, metricsRoute } from "../ops/metrics.ts";
import { contract } from "../wire/proto.ts";
import { addReflection } from "../wire/reflection.ts";
import { bindServer, createServer, shutdownServer } from "../wire/grpc_server.ts";
import type { TlsConfig } from "../wire/tls.ts";
import type { CapacitySchedule } from "./capacity_schedule.ts";
import { meanServiceTime, type ServiceTime } from "./service_time.ts";
import { SlotMeter, SlotPool } from "./slot_pool.ts";
import { WorkerPool } from "./worker_pool.ts";

const log = getLogger(["lb", "backend"]);

/** Health service name of a backend (besides `""`, the whole process). */
export const BACKEND_SERVICE_NAME = "load_balancer.Backend";

/** Options of {@linkcode Backend}. */
export interface BackendOptions {
  host: string;
  port: number;
  /** `host` or `host:port` others dial, when not `host` (see `advertisedAddress`). @default {host} */
  advertise?: string;
  /**
   * Balancer `host:port` to report load to (and register with, without etcd). With etcd and no
   * balancer, it reports to every balancer registered under `etcd.balancerPrefix`.
   */
  balancer?: string;
  /** etcd registration; without it the backend registers with the balancer. */
  etcd?: {
    endpoints: string[];
    prefix: string;
    ttlS: number;
    security?: EtcdSecurity;
    /** Where the live balancers are found (without `balancer`). @default {DEFAULT_BALANCER_PREFIX} */
    balancerPrefix?: string;
  };
  /** Web Workers for CPU-heavy tasks, or slots with `emulation`. */
  workers: number;
  /**
   * Emulate CPU-heavy tasks instead of computing them: each holds one of `workers` slots for a
   * time drawn from `serviceTime` divided by the capacity at the time (since start), and the
   * load reports carry busy slots as `cpu_load`. `workUnits` and `slowdown` then do not apply.
   * @default {none: tasks compute}
   */
  emulation?: { serviceTime: ServiceTime; capacity: CapacitySchedule };
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
  #heavy: { pool: WorkerPool; workUnits: number } | { slots: SlotPool };
  #etcd: Etcd3 | undefined;
  #registration: EtcdRegistration | undefined;
  /** One reporter per balancer, by its address. */
  #reporters = new Map<string, LoadReporter>();
  #balancers: BalancerFollower | undefined;
  #draining = false;
  /** Tasks in flight and their latency by RIF: what a health check's ORCA trailer reports. */
  #rifLatency = new RifLatency();
  /** Its load as ORCA reports, out of band and in the trailers of its answers. */
  #orca: OrcaReports;
  #health = new HealthService(
    ["", BACKEND_SERVICE_NAME],
    "NOT_SERVING",
    () => orcaTrailer(this.#orca.latest, this.#rifLatency),
  );
  #http: HttpServer | undefined;
  #httpPort = 0;
  #counters: TaskCounters = { simple: 0, heavy: 0, failed: 0 };
  #address = "";
  #metrics: BackendMetrics;

  /** Builds the backend; {@linkcode start} serves it. */
  constructor(options: BackendOptions) {
    this.#options = options;
    this.#server = createServer(options.maxMessageBytes);
    const emulation = options.emulation;
    this.#heavy = emulation
      ? {
        slots: new SlotPool({
          slots: options.workers,
          serviceTime: emulation.serviceTime,
          capacity: emulation.capacity,
        }),
      }
      : {
        pool: new WorkerPool(options.workers),
        workUnits: options.workUnits * options.slowdown,
      };
    this.#metrics = createBackendMetrics(this.#tasks);
    this.#orca = new OrcaReports({
      sampler: new LoadSampler({
        tasks: () => this.#taskCounts(),
        meter: "slots" in this.#heavy ? new SlotMeter(this.#heavy.slots) : undefined,
        source: options.loadSource,
      }),
      workers: options.workers,
      emulated: emulation !== undefined,
      intervalMs: options.reportIntervalMs,
    });
  }

  /** Tasks in flight, queued, completed and failed, as load reports count them. */
  #taskCounts(): TaskCounts {
    return {
      inFlight: this.#tasks.inFlight,
      queueLength: this.#tasks.queueLength,
      completed: this.#counters.simple + this.#counters.heavy,
      failed: this.#counters.failed,
    };
  }

  /** Where CPU-heavy tasks run or wait: the worker pool, or the emulated slots. */
  get #tasks(): WorkerPool | SlotPool {
    return "slots" in this.#heavy ? this.#heavy.slots : this.#heavy.pool;
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
    this.#address = advertisedAddress(o.host, port, o.advertise);
    this.#server.addService(
      contract.Backend.service,
      createBackendHandlers({
        ...this.#heavy,
        address: this.#address,
        draining: () => this.#draining,
        counters: this.#counters,
        metrics: this.#metrics,
        rifLatency: this.#rifLatency,
        trailer: () => orcaTrailer(this.#orca.latest),
      }),
    );
    this.#health.addTo(this.#server);
    this.#orca.addTo(this.#server);
    this.#orca.start();
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
    if (o.balancer) this.#startReporter(o.balancer);
    else if (this.#etcd) await this.#followBalancers(this.#etcd);
    if (o.emulation) {
      log.info(
        "Backend {address} serving with {workers} emulated slot(s), mean service time " +
          "{meanMs} ms, capacity {capacity}",
        {
          address: this.#address,
          workers: o.workers,
          meanMs: meanServiceTime(o.emulation.serviceTime),
          capacity: o.emulation.capacity.map((s) => `${s.capacity} from ${s.atMs} ms`).join(", "),
        },
      );
    } else {
      log.info("Backend {address} serving with {workers} worker(s), slowdown {slowdown}", {
        address: this.#address,
        workers: o.workers,
        slowdown: o.slowdown,
      });
    }
    if (this.#http) {
      log.info("Backend {address} HTTP (/metrics, /health) on http://{host}:{port}/", {
        address: this.#address,
        host: o.http!.host,
        port: this.#httpPort,
      });
    }
    return this.#address;
  }

  /** Reports to every balancer registered in etcd, following joins and leaves. */
  async #followBalancers(client: Etcd3): Promise<void> {
    this.#balancers = new BalancerFollower();
    this.#balancers.set.onMembership((balancer, joined) => {
      if (joined) this.#startReporter(balancer);
      else this.#stopReporter(balancer);
    });
    const prefix = this.#options.etcd?.balancerPrefix ?? DEFAULT_BALANCER_PREFIX;
    await this.#balancers.start(client, prefix);
  }

  #startReporter(balancer: string): void {
    const o = this.#options;
    const reporter = new LoadReporter({
      balancer,
      address: this.#address,
      intervalMs: o.reportIntervalMs,
      source: o.loadSource,
      meter: "slots" in this.#heavy ? new SlotMeter(this.#heavy.slots) : undefined,
      register: !o.etcd,
      tls: o.tls,
      token: o.token,
      tasks: () => this.#taskCounts(),
    });
    this.#reporters.set(balancer, reporter);
    reporter.start();
    log.info("Backend {address} reports its load to balancer {balancer}", {
      address: this.#address,
      balancer,
    });
  }

  #stopReporter(balancer: string): void {
    this.#reporters.get(balancer)?.stop();
    this.#reporters.delete(balancer);
    log.info("Backend {address} stopped reporting to balancer {balancer} (it left)", {
      address: this.#address,
      balancer,
    });
  }

  /**
   * Drains: reports NOT_SERVING and deregisters from etcd first (so the balancer stops naming
   * it), stops reporting, finishes in-flight tasks (up to `graceMs`), then closes everything.
   */
  async stop(graceMs = 10_000): Promise<void> {
    log.info("Backend {address} draining", { address: this.#address });
    this.#health.setAll("NOT_SERVING");
    await this.#registration?.stop();
    await this.#balancers?.stop();
    for (const reporter of this.#reporters.values()) reporter.stop();
    this.#orca.stop();
    this.#reporters.clear();
    this.#draining = true;
    this.#health.close();
    await this.#http?.stop();
    await shutdownServer(this.#server, graceMs);
    this.#tasks.close();
    this.#etcd?.close();
    log.info("Backend {address} stopped", { address: this.#address });
  }
}

/**
 * An ORCA load report as trailing metadata: the latest sample of the backend's load and, on a
 * health check, Prequal's signals.
 */
function orcaTrailer(load: Readonly<OrcaReport>, rifLatency?: RifLatency): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set(
    ORCA_TRAILER,
    encodeOrcaReport({
      ...load,
      namedMetrics: rifLatency
        ? { [RIF_METRIC]: rifLatency.rif, [LATENCY_METRIC]: rifLatency.estimateMs() }
        : undefined,
    }),
  );
  return metadata;
}
