/**
 * The balancer process: a gRPC server for the `LoadBalancer` service, a server set fed by
 * discovery (etcd or built-in), and a picker under the configured policy.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import { getLogger } from "@logtape/logtape";
import type { Etcd3 } from "etcd3";
import type { EtcdSecurity } from "../etcd/etcd_client.ts";
import { createPolicy, type PolicyName } from "../../policies/mod.ts";
import { advertisedAddress } from "../wire/address.ts";
import { changePolicy, createBalancerHandlers } from "./balancer_service.ts";
import {
  BalancerFollower,
  DEFAULT_BALANCER_PREFIX,
  registerBalancer,
} from "../etcd/balancer_registry.ts";
import { BuiltinRegistry } from "./builtin_discovery.ts";
import { dashboardRoutes } from "./dashboard.ts";
import type { EtcdDiscovery } from "../etcd/etcd_discovery.ts";
import type { EtcdRegistration } from "../etcd/etcd_registration.ts";
import { loadEtcd } from "../etcd/etcd_loader.ts";
import { HealthService } from "../wire/grpc_health.ts";
import { HealthChecker } from "../health/health_checker.ts";
import { LoadProber } from "../picking/load_prober.ts";
import { healthRoute, HttpServer, type Route } from "../ops/http_server.ts";
import {
  type BalancerMetrics,
  createBalancerMetrics,
  metricsRoute,
  monitorEventLoop,
} from "../ops/metrics.ts";
import { Picker } from "../picking/picker.ts";
import { contract } from "../wire/proto.ts";
import { addReflection } from "../wire/reflection.ts";
import { bindServer, createServer, shutdownServer } from "../wire/grpc_server.ts";
import { ServerSet } from "../picking/server_set.ts";
import { DEFAULT_POLICY_KEY, SharedPolicy } from "../etcd/shared_policy.ts";
import { DEFAULT_WATCH_INTERVAL_MS, WatchBroadcast, withEncodedWatch } from "./watch_broadcast.ts";
import { addAds, type AdsServer } from "../xds/ads_server.ts";
import { PrefixedService } from "../xds/prefixed_service.ts";
import { sleep } from "../wire/backoff.ts";
import type { TlsConfig } from "../wire/tls.ts";

const log = getLogger(["lb", "balancer"]);

/** Longest the start waits for the shared policy's first read (etcd slow or down). */
const SHARED_POLICY_WAIT_MS = 2_000;

/** Where the balancer learns which servers are live. */
export type DiscoveryConfig =
  | { kind: "builtin"; ttlMs: number }
  | {
    kind: "etcd";
    endpoints: string[];
    prefix: string;
    security?: EtcdSecurity;
    /** Where this balancer registers itself, as `<prefix><host:port>`. @default {DEFAULT_BALANCER_PREFIX} */
    balancerPrefix?: string;
    /** The key of the policy the balancers share. @default {DEFAULT_POLICY_KEY} */
    policyKey?: string;
  };

/** Options of {@linkcode Balancer}. */
export interface BalancerOptions {
  host: string;
  /**
   * `host` or `host:port` clients and backends dial, registered in etcd, when not `host` (see
   * `advertisedAddress`). @default {host}
   */
  advertise?: string;
  /** 0 binds a free port. */
  port: number;
  policy: PolicyName;
  discovery: DiscoveryConfig;
  /** Shortest time between two `WatchServers` messages, and two xDS pushes. @default {100} */
  watchIntervalMs?: number;
  /**
   * Serve these services over xDS (`lib/xds/`): without a prefix, this balancer's set; with
   * one (etcd discovery), the servers registered under it. None when absent.
   */
  xdsServices?: { name: string; prefix?: string }[];
  /**
   * Active health checks of the servers (`grpc.health.v1`); `intervalMs: 0` turns them off, and
   * servers are then in the picks from registration until discovery drops them.
   * @default {{ intervalMs: DEFAULT_HEALTH_INTERVAL_MS, timeoutMs: DEFAULT_HEALTH_TIMEOUT_MS }}
   */
  healthCheck?: { intervalMs?: number; timeoutMs?: number; maxChecksPerS?: number };
  /** Serve HTTP (dashboard, `/metrics`, `/health`) here; off when absent. */
  http?: { host: string; port: number };
  /** Largest request accepted, in bytes; larger ones answer RESOURCE_EXHAUSTED. @default {DEFAULT_MAX_MESSAGE_BYTES} */
  maxMessageBytes?: number;
  /**
   * TLS of its server, and of its health checks to the servers (which trust `caPem` and show
   * `certPem` as a client certificate). @default {plaintext}
   */
  tls?: TlsConfig;
  /** Control-plane token the control RPCs require (the health service stays open). */
  token?: string;
  /** With `token`: require it on `GetServer` and `WatchServers` too. @default {false} */
  protectGetServer?: boolean;
  /**
   * Count each own pick once whatever the live balancers (the trap, only there to measure it in
   * `bench --scenarios replicas`). @default {false}
   */
  replicaUnaware?: boolean;
}

/** Health service name of the balancer (besides `""`, the whole process). */
export const BALANCER_SERVICE_NAME = "load_balancer.LoadBalancer";

/** A running balancer. */
export class Balancer {
  readonly set: ServerSet = new ServerSet();
  readonly picker: Picker;
  #options: BalancerOptions;
  #server: grpc.Server;
  #registry: BuiltinRegistry | undefined;
  #etcd: Etcd3 | undefined;
  #discovery: EtcdDiscovery | undefined;
  #registration: EtcdRegistration | undefined;
  /** The live balancers (this one included), whose number the load-aware policies assume. */
  #replicas: BalancerFollower | undefined;
  #sharedPolicy: SharedPolicy | undefined;
  #stopLagMonitor = () => {};
  #port = 0;
  #watch: WatchBroadcast;
  #ads: AdsServer | undefined;
  /** xDS services on etcd prefixes of their own. */
  #prefixedServices: PrefixedService[] = [];
  #health = new HealthService(["", BALANCER_SERVICE_NAME]);
  #checker: HealthChecker | undefined;
  /** Sends a probing policy's probes (none without health checks: prequal then picks in turn). */
  readonly prober: LoadProber | undefined;
  #unsubscribeHealth: () => void;
  #http: HttpServer | undefined;
  #httpPort = 0;
  #metrics: BalancerMetrics;

  /** Builds the balancer; {@linkcode start} serves it. */
  constructor(options: BalancerOptions) {
    this.#options = options;
    this.#server = createServer(options.maxMessageBytes);
    this.picker = new Picker(createPolicy(options.policy), this.set);
    const clock = () => performance.now();
    if (options.discovery.kind === "builtin") {
      this.#registry = new BuiltinRegistry(this.set, options.discovery.ttlMs, clock);
    }
    this.#watch = new WatchBroadcast(this.set, this.picker, clock, options.watchIntervalMs);
    this.#metrics = createBalancerMetrics({
      set: this.set,
      picker: this.picker,
      watchers: () => this.#watch.subscribers,
      xds: () => this.#ads?.stats,
    });
    this.#server.addService(
      withEncodedWatch(contract.LoadBalancer.service),
      createBalancerHandlers({
        set: this.set,
        picker: this.picker,
        registry: this.#registry,
        etcdPrefix: options.discovery.kind === "etcd" ? options.discovery.prefix : "",
        watch: this.#watch,
        clock,
        token: options.token,
        protectGetServer: options.protectGetServer,
        whenChecked: (address) => this.#checker?.whenChecked(address) ?? Promise.resolve(),
        metrics: this.#metrics,
        sharedPolicy: () => this.#sharedPolicy,
        prober: () => this.prober,
      }),
    );
    if (options.xdsServices) {
      this.#prefixedServices = options.xdsServices.flatMap(({ name, prefix }) =>
        prefix === undefined ? [] : [
          new PrefixedService({
            name,
            prefix,
            policy: () => this.picker.policyName as PolicyName,
            healthCheck: { ...options.healthCheck, tls: options.tls },
          }),
        ]
      );
      this.#ads = addAds(this.#server, {
        services: options.xdsServices.map(({ name }) =>
          this.#prefixedServices.find((s) => s.name === name) ??
            { name, set: this.set, picker: this.picker }
        ),
        clock,
        intervalMs: options.watchIntervalMs ?? DEFAULT_WATCH_INTERVAL_MS,
        token: options.protectGetServer ? options.token : undefined,
      });
    }
    // SERVING while it can name a server: a probe in front of the balancer sees it useless
    // before any client does.
    this.#health.addTo(this.#server);
    addReflection(this.#server, ["load_balancer.LoadBalancer", "grpc.health.v1.Health"]);
    this.#unsubscribeHealth = this.set.onSnapshot((snapshot) => {
      this.#health.setAll(snapshot.servers.length > 0 ? "SERVING" : "NOT_SERVING");
    });
    if ((options.healthCheck?.intervalMs ?? 1) > 0) {
      this.#checker = new HealthChecker({
        set: this.set,
        ...options.healthCheck,
        tls: options.tls,
        metrics: this.#metrics,
      });
      this.prober = new LoadProber({ picker: this.picker, transport: this.#checker });
    }
  }

  /** The port it listens on (after {@linkcode start}). */
  get port(): number {
    return this.#port;
  }

  /** The HTTP port (after {@linkcode start}; 0 without `http`). */
  get httpPort(): number {
    return this.#httpPort;
  }

  /** The HTTP routes: one line per concept, each built in its own module. */
  #routes(): Record<string, Route> {
    return {
      ...dashboardRoutes({
        set: this.set,
        picker: this.picker,
        watch: this.#watch,
        token: this.#options.token,
        stopping: () => this.#http!.stopping,
        sharedPolicy: () => this.#sharedPolicy,
        prober: () => this.prober,
        xds: () => this.#ads?.stats,
      }),
      "/health": healthRoute(() => this.#health.status() === "SERVING"),
      "/metrics": metricsRoute(this.#metrics.registry),
    };
  }

  /** Starts discovery and serving; resolves with the bound port. */
  async start(): Promise<number> {
    const { discovery } = this.#options;
    this.#checker?.start();
    this.#stopLagMonitor = monitorEventLoop(this.#metrics.eventLoopLag);
    if (discovery.kind === "etcd") {
      const { createEtcdClient, EtcdDiscovery } = await loadEtcd();
      this.#etcd = createEtcdClient(discovery.endpoints, { security: discovery.security });
      this.#discovery = new EtcdDiscovery({
        client: this.#etcd,
        prefix: discovery.prefix,
        set: this.set,
        metrics: this.#metrics,
      });
      // Serving starts without waiting for etcd: until the first list answers, GetServer says
      // no server is known, and the discovery retries in the background.
      this.#discovery.start().catch((error) => {
        log.error("etcd discovery stopped: {error}", { error });
      });
      for (const service of this.#prefixedServices) await service.start(this.#etcd);
      const shared = this.#sharedPolicy = new SharedPolicy({
        client: this.#etcd,
        key: discovery.policyKey ?? DEFAULT_POLICY_KEY,
        apply: (policy) => {
          changePolicy(
            { picker: this.picker, watch: this.#watch },
            policy,
            `etcd key ${shared.key}`,
          );
        },
        current: () => this.picker.policyName,
      });
      // The shared policy is read before serving (it wins over --policy), but a slow etcd does
      // not hold the start up for long: the watch reads it again when it connects.
      await Promise.race([
        shared.start(),
        sleep(SHARED_POLICY_WAIT_MS, new AbortController().signal),
      ]);
    } else {
      this.#registry!.start();
    }
    if (this.#options.http) {
      this.#http = new HttpServer({ ...this.#options.http, routes: this.#routes() });
      this.#httpPort = await this.#http.start();
    }
    this.#port = await bindServer(
      this.#server,
      this.#options.host,
      this.#options.port,
      this.#options.tls,
    );
    log.info("Balancer listening on {host}:{port} with policy {policy} and {discovery} discovery", {
      host: this.#options.host,
      port: this.#port,
      policy: this.picker.policyName,
      discovery: discovery.kind,
    });
    if (discovery.kind === "etcd") {
      const prefix = discovery.balancerPrefix ?? DEFAULT_BALANCER_PREFIX;
      this.#registration = await registerBalancer({
        client: this.#etcd!,
        prefix,
        address: advertisedAddress(this.#options.host, this.#port, this.#options.advertise),
      });
      const replicas = this.#replicas = new BalancerFollower();
      replicas.set.onMembership(() => {
        if (!this.#options.replicaUnaware) this.picker.setReplicas(replicas.set.size);
        log.info(
          "{count} balancer(s) live: load-aware policies count each own pick {count} times",
          {
            count: this.picker.replicas,
          },
        );
      });
      replicas.start(this.#etcd!, prefix).catch((error) => {
        log.error("etcd watch of the balancers stopped: {error}", { error });
      });
    }
    if (this.#http) {
      log.info("Balancer HTTP (dashboard, /metrics, /health) on http://{host}:{port}/", {
        host: this.#options.http!.host,
        port: this.#httpPort,
      });
    }
    return this.#port;
  }

  /** Stops accepting, lets in-flight calls finish (up to `graceMs`), closes discovery. */
  async stop(graceMs = 5_000): Promise<void> {
    // Leave the balancers' prefix first, so backends and clients move on to the others.
    await this.#registration?.stop();
    // Watch streams never end by themselves; end them so the graceful stop can finish.
    this.#unsubscribeHealth();
    this.#health.setAll("NOT_SERVING");
    this.#health.close();
    this.#watch.close();
    this.#ads?.close();
    await Promise.all(this.#prefixedServices.map((service) => service.stop()));
    await this.#http?.stop();
    await shutdownServer(this.#server, graceMs);
    this.prober?.close();
    this.#checker?.stop();
    this.#registry?.stop();
    await this.#discovery?.stop();
    await this.#replicas?.stop();
    await this.#sharedPolicy?.stop();
    this.#etcd?.close();
    this.#stopLagMonitor();
    this.picker.close();
    log.info("Balancer stopped");
  }
}
