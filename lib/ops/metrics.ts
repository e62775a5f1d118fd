/**
 * Prometheus metrics of the balancer and the backends (`GET /metrics`), with prom-client. Each
 * process has its own {@linkcode Registry}, so several in one test process do not collide; what
 * another object already holds (picks, servers, queue) is read at scrape time, so the pick path
 * does no extra work. prom-client's default metrics are left out (without `/proc` they report
 * zeros): memory and CPU time come from `Deno.memoryUsage()` and `process.cpuUsage()`.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import process from "node:process";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Route } from "./http_server.ts";
import type { Picker } from "../picking/picker.ts";
import type { ServerSet } from "../picking/server_set.ts";
import type { AdsStats } from "../xds/ads_server.ts";

/**
 * Buckets of `lb_get_server_duration_seconds`, from 1 µs to 10 ms: the handler answers from
 * memory, in microseconds.
 */
export const GET_SERVER_BUCKETS_S = [
  0.000001,
  0.0000025,
  0.000005,
  0.00001,
  0.000025,
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.01,
];

/** Buckets of `lb_backend_task_duration_seconds`: a SIMPLE task in µs, CPU_HEAVY in ms to s. */
export const TASK_BUCKETS_S = [
  0.00001,
  0.0001,
  0.001,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

/** What the balancer's metrics read at scrape time. */
export interface BalancerMetricSources {
  set: ServerSet;
  picker: Picker;
  /** Current `WatchServers` subscribers. */
  watchers: () => number;
  /** What xDS clients have done so far; undefined (all 0) when the balancer serves no xDS. */
  xds?: () => Readonly<AdsStats> | undefined;
}

/** The balancer's registry, and the instruments counted where things happen. */
export interface BalancerMetrics {
  readonly registry: Registry;
  /** Observed by the `GetServer` handler. */
  readonly getServerDuration: Histogram;
  /** Counted by the `ReportLoad` handler, by `result`: `ok`, `not_found` or `invalid`. */
  readonly loadReports: Counter<"result">;
  /** Counted by the etcd discovery when its watch comes back after being lost or cancelled. */
  readonly etcdWatchReconnects: Counter;
  /** Counted by the health checker. */
  readonly healthEjections: Counter;
  /** Counted by the health checker. */
  readonly healthReadmissions: Counter;
  /** Counted by the health checker, by `source`: `health_check` (per call) or `out_of_band`. */
  readonly orcaReports: Counter<"source">;
  /** Fed by {@linkcode monitorEventLoop} while the balancer runs. */
  readonly eventLoopLag: Histogram;
}

/** Adds the process's memory gauges (read from `Deno.memoryUsage()` at scrape time). */
function addMemoryMetrics(registers: Registry[]): void {
  new Gauge({
    name: "lb_process_resident_memory_bytes",
    help: "Resident set size of the process (Deno.memoryUsage().rss)",
    registers,
    collect() {
      this.set(Deno.memoryUsage().rss);
    },
  });
  new Gauge({
    name: "lb_process_heap_used_bytes",
    help: "V8 heap in use by the process (Deno.memoryUsage().heapUsed)",
    registers,
    collect() {
      this.set(Deno.memoryUsage().heapUsed);
    },
  });
}

/** The counters of {@linkcode AdsStats}, by its field. */
const XDS_COUNTERS = [
  ["responses", "lb_xds_responses_total", "xDS responses sent (each a version of one type)"],
  ["acks", "lb_xds_acks_total", "xDS responses clients accepted (ACK)"],
  [
    "nacks",
    "lb_xds_nacks_total",
    "xDS responses clients rejected (NACK; the balancer's log has the error detail)",
  ],
] as const;

/** Creates the balancer's metrics in a registry of their own. */
export function createBalancerMetrics(sources: BalancerMetricSources): BalancerMetrics {
  const { set, picker } = sources;
  const registry = new Registry();
  const registers = [registry];
  addMemoryMetrics(registers);
  new Counter({
    name: "lb_process_cpu_seconds_total",
    help: "CPU time of the balancer process, user and system",
    registers,
    collect() {
      const { user, system } = process.cpuUsage();
      this.reset();
      this.inc((user + system) / 1e6);
    },
  });
  new Counter({
    name: "lb_picks_total",
    help: "Servers named by GetServer, by policy and server",
    labelNames: ["policy", "server"],
    registers,
    collect() {
      this.reset();
      for (const [policy, servers] of picker.pickCounts()) {
        for (const [server, count] of servers) this.inc({ policy, server }, count);
      }
    },
  });
  new Gauge({
    name: "lb_servers",
    help: "Servers known (registered) and healthy (known, in the picks)",
    labelNames: ["state"],
    registers,
    collect() {
      this.set({ state: "known" }, set.size);
      this.set({ state: "healthy" }, set.snapshot.servers.length);
    },
  });
  new Gauge({
    name: "lb_watch_subscribers",
    help: "Clients subscribed to WatchServers",
    registers,
    collect() {
      this.set(sources.watchers());
    },
  });
  new Gauge({
    name: "lb_xds_streams",
    help: "xDS clients connected (ADS streams open)",
    registers,
    collect() {
      this.set(sources.xds?.()?.streams ?? 0);
    },
  });
  for (const [key, name, help] of XDS_COUNTERS) {
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(sources.xds?.()?.[key] ?? 0);
      },
    });
  }
  new Gauge({
    name: "lb_policy_info",
    help: "The active policy (1 for it, no series for the others)",
    labelNames: ["policy"],
    registers,
    collect() {
      this.reset();
      this.set({ policy: picker.policyName }, 1);
    },
  });
  return {
    registry,
    getServerDuration: new Histogram({
      name: "lb_get_server_duration_seconds",
      help: "Time GetServer takes in the balancer, from the call to its answer (network excluded)",
      buckets: GET_SERVER_BUCKETS_S,
      registers,
    }),
    loadReports: new Counter({
      name: "lb_load_reports_total",
      help: "ReportLoad calls, by result: ok, not_found (unknown server), invalid (bad fields)",
      labelNames: ["result"],
      registers,
    }),
    etcdWatchReconnects: new Counter({
      name: "lb_etcd_watch_reconnects_total",
      help: "Times the etcd watch came back after being lost or cancelled",
      registers,
    }),
    healthEjections: new Counter({
      name: "lb_health_ejections_total",
      help: "Servers taken out of the picks by a failed health check",
      registers,
    }),
    healthReadmissions: new Counter({
      name: "lb_health_readmissions_total",
      help: "Ejected servers put back in the picks by a passing health check",
      registers,
    }),
    orcaReports: new Counter({
      name: "lb_orca_reports_total",
      help: "ORCA load reports taken from servers, by source: health_check (in a check's " +
        "trailers) or out_of_band (OpenRcaService)",
      labelNames: ["source"],
      registers,
    }),
    eventLoopLag: new Histogram({
      name: "lb_event_loop_lag_seconds",
      help: "How late a timer due every 100 ms ran: the balancer's own stalls (GC, busy cores), " +
        "which delay answers and health check deadlines",
      buckets: EVENT_LOOP_LAG_BUCKETS_S,
      registers,
    }),
  };
}

/** Buckets of `lb_event_loop_lag_seconds`, from 1 ms to 2.5 s. */
export const EVENT_LOOP_LAG_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** How often {@linkcode monitorEventLoop} samples the lag. */
export const EVENT_LOOP_SAMPLE_MS = 100;

/**
 * Observes into `histogram`, every {@linkcode EVENT_LOOP_SAMPLE_MS}, how late a timer ran (in
 * seconds); returns the function that stops it. The timer does not keep the process alive.
 */
export function monitorEventLoop(histogram: Pick<Histogram, "observe">): () => void {
  let due = performance.now() + EVENT_LOOP_SAMPLE_MS;
  const timer = setInterval(() => {
    const now = performance.now();
    histogram.observe(Math.max(0, now - due) / 1_000);
    due = now + EVENT_LOOP_SAMPLE_MS;
  }, EVENT_LOOP_SAMPLE_MS);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}

/** What a backend's metrics read at scrape time (its worker pool). */
export interface BackendMetricSources {
  readonly inFlight: number;
  readonly queueLength: number;
}

/** A backend's registry, and the instruments its `ProcessTask` handler feeds. */
export interface BackendMetrics {
  readonly registry: Registry;
  /** By `type`: `SIMPLE`, `CPU_HEAVY`, or `other` for a type not accepted. */
  readonly taskDuration: Histogram<"type">;
  /** By `type` and `result`: `ok`, or the status name in lower case (`invalid_argument`). */
  readonly tasks: Counter<"type" | "result">;
}

/** Creates a backend's metrics in a registry of their own. */
export function createBackendMetrics(pool: BackendMetricSources): BackendMetrics {
  const registry = new Registry();
  const registers = [registry];
  addMemoryMetrics(registers);
  new Gauge({
    name: "lb_backend_tasks_in_flight",
    help: "CPU_HEAVY tasks running on a worker or waiting for one",
    registers,
    collect() {
      this.set(pool.inFlight);
    },
  });
  new Gauge({
    name: "lb_backend_queue_length",
    help: "CPU_HEAVY tasks waiting for a worker",
    registers,
    collect() {
      this.set(pool.queueLength);
    },
  });
  new Counter({
    name: "lb_backend_cpu_seconds_total",
    help: "CPU time of the backend process, user and system, every worker thread included",
    registers,
    collect() {
      const { user, system } = process.cpuUsage();
      this.reset();
      this.inc((user + system) / 1e6);
    },
  });
  return {
    registry,
    taskDuration: new Histogram({
      name: "lb_backend_task_duration_seconds",
      help: "Time ProcessTask takes in the backend, from the call to its answer, by task type",
      labelNames: ["type"],
      buckets: TASK_BUCKETS_S,
      registers,
    }),
    tasks: new Counter({
      name: "lb_backend_tasks_total",
      help: "ProcessTask calls answered, by task type and result (ok or the status name)",
      labelNames: ["type", "result"],
      registers,
    }),
  };
}

/**
 * Wraps a unary handler so `done` hears of each answer: the call, its error (if any) and the
 * seconds from the call to the answer on `clock` (ms).
 */
export function measured<Req, Res>(
  handler: grpc.handleUnaryCall<Req, Res>,
  clock: () => number,
  done: (call: grpc.ServerUnaryCall<Req, Res>, error: grpc.ServiceError | null, s: number) => void,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const startedAt = clock();
    handler(call, (error, value, trailer, flags) => {
      done(call, error as grpc.ServiceError | null, (clock() - startedAt) / 1_000);
      callback(error, value, trailer, flags);
    });
  };
}

/** The `/metrics` route: the registry in Prometheus text format. */
export function metricsRoute(registry: Registry): Route {
  return {
    GET: async () =>
      new Response(await registry.metrics(), { headers: { "content-type": registry.contentType } }),
  };
}
