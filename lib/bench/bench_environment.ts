/**
 * The benchmark's processes: its etcd and, for each scenario, the balancers, backends, `echo`
 * baseline and load clients it runs, with their flags and ports.
 *
 * Every process started is tracked, so {@linkcode BenchEnvironment.stop} (at the end, on a
 * failure, or on Ctrl-C) tears everything down: no orphan process, no leftover etcd data.
 *
 * @module
 */
import { type EntryProcess, spawnEntry } from "../harness/entry_process.ts";
import { type EtcdProcess, startEtcd } from "../harness/etcd_process.ts";
import { freePort } from "../harness/ports.ts";
import { waitFor } from "../harness/wait.ts";
import {
  type BackendClient,
  createBackendClient,
  createLoadBalancerClient,
  type LoadBalancerClient,
  POLLING_CHANNEL_OPTIONS,
  type StatsResponse,
  unary,
} from "../wire/proto.ts";
import type { Scenario, ScenarioName } from "./bench_scenarios.ts";

/** What {@linkcode BenchEnvironment} needs of the benchmark's options. */
export interface EnvironmentOptions {
  /** Where etcd keeps its data while the run lasts (removed after). */
  etcdDir: string;
  /** Work units per CPU-heavy task. */
  workUnits: number;
  /** Backends' load report period. */
  reportIntervalMs: number;
  /** The first balancer of each scenario serves its dashboard on this port; off when absent. */
  httpPort?: number;
}

/** A backend process, and what the benchmark has read of it. */
export interface Backend {
  label: string;
  slowdown: number;
  address: string;
  process: EntryProcess;
  client: BackendClient;
  /** Stats at the start of the measured window, and the latest read. */
  first?: StatsResponse;
  last?: StatsResponse;
  killed: boolean;
  joined: boolean;
  /** CPU time and wall time measured during each target's runs, by target label. */
  usage: Map<string, { cpuUs: number; wallUs: number }>;
}

/** A balancer process, and a client of it. */
export interface Balancer {
  address: string;
  process: EntryProcess;
  lb: LoadBalancerClient;
}

/** A balancer (and its replicas, if any) with its backends, for one or more targets. */
export interface Deployment {
  /** Where the backends register. */
  prefix: string;
  /**
   * The `replicas` scenario: where the balancers register, the backends then reporting to every
   * balancer found there instead of to the first balancer alone.
   */
  balancerPrefix?: string;
  /** The first one serves the dashboard, if any; the others are its replicas. */
  balancers: Balancer[];
  backends: Backend[];
}

/** How many balancers a deployment runs, and with which flag. */
export interface BalancerCount {
  /** @default {1} */
  balancers?: number;
  /** The balancers run with `--replica-unaware`. */
  replicaUnaware?: boolean;
}

/** Starts and stops the benchmark's processes. One instance per benchmark run. */
export class BenchEnvironment {
  #options: EnvironmentOptions;
  #children = new Set<EntryProcess>();
  #etcd: EtcdProcess | undefined;
  #aborted = false;
  #deployments = 0;

  /** Creates an environment with nothing started. */
  constructor(options: EnvironmentOptions) {
    this.#options = options;
  }

  /** Starts the etcd every scenario registers in. */
  async startEtcd(): Promise<void> {
    this.#etcd = await startEtcd({ parentDir: this.#options.etcdDir });
  }

  /** The etcd's endpoint (once started). */
  get etcdEndpoint(): string {
    return this.#etcd!.endpoint;
  }

  /** Stops every process started, and etcd. */
  async stop(): Promise<void> {
    await Promise.all([...this.#children].map((child) => child.stop(3_000)));
    this.#children.clear();
    await this.#etcd?.close().catch(() => {});
    this.#etcd = undefined;
  }

  /** Stops everything, and refuses to start anything more (Ctrl-C). */
  async abort(): Promise<void> {
    this.#aborted = true;
    await this.stop();
  }

  /** Starts an entry, tracked until it exits. */
  spawn(...args: Parameters<typeof spawnEntry>): EntryProcess {
    if (this.#aborted) throw new Error("The benchmark was stopped");
    const child = spawnEntry(...args);
    this.#children.add(child);
    child.status.then(() => this.#children.delete(child));
    return child;
  }

  /**
   * Starts a balancer on `port` serving the servers under `prefix`, with `extra` flags, and with
   * the bench's dashboard port when it has one and `dashboard` is true.
   */
  spawnBalancer(
    port: number,
    prefix: string,
    extra: string[] = [],
    dashboard = true,
    name = "balancer",
  ): EntryProcess {
    const http = this.#options.httpPort === undefined || !dashboard
      ? []
      : ["--http-port", String(this.#options.httpPort)];
    return this.spawn("balancer", [
      ...http,
      ...extra,
      ...this.#etcdFlags(port, prefix),
      "--log-level",
      "warning",
    ], { name });
  }

  /** Fresh etcd prefixes for one deployment: where its servers register, and its balancers. */
  prefixes(scenario: ScenarioName): { servers: string; balancers: string } {
    const n = ++this.#deployments;
    return { servers: `/bench/${scenario}/${n}/`, balancers: `/bench-balancers/${scenario}/${n}/` };
  }

  /**
   * Starts the balancers and the scenario's backends, and waits until every balancer lists every
   * backend with a load report.
   */
  async startDeployment(scenario: Scenario, count: BalancerCount = {}): Promise<Deployment> {
    return await this.startCustomDeployment(
      scenario.name,
      scenario.balancers,
      scenario.slowdowns.map((slowdown, i) => ({
        slowdown,
        label: `s${i + 1}${slowdown !== 1 ? ` (x${slowdown} slow)` : ""}`,
        extra: [],
      })),
      count,
    );
  }

  /**
   * Starts `count` balancers (registering under their own prefix when `replicas` is set) and
   * `backends`, and waits until every balancer lists every backend with a load report.
   */
  async startCustomDeployment(
    name: ScenarioName,
    replicas: number | undefined,
    backends: { slowdown: number; label: string; extra: string[] }[],
    count: BalancerCount = {},
  ): Promise<Deployment> {
    const scenario = { name, balancers: replicas };
    const prefixes = this.prefixes(scenario.name);
    // Outside the servers' prefix, so a balancer is never taken for a server.
    const balancerPrefix = scenario.balancers === undefined ? undefined : prefixes.balancers;
    const registry = [
      ...(balancerPrefix === undefined ? [] : ["--balancer-prefix", balancerPrefix]),
      ...(count.replicaUnaware ? ["--replica-unaware"] : []),
    ];
    const balancers = Array.from({ length: count.balancers ?? 1 }, (_, i): Balancer => {
      const port = freePort();
      const address = `127.0.0.1:${port}`;
      // The dashboard port, if any, is the first balancer's.
      const name = i === 0 ? "balancer" : `balancer ${i + 1}`;
      const process = this.spawnBalancer(port, prefixes.servers, registry, i === 0, name);
      return { address, process, lb: lbClient(address) };
    });
    const deployment: Deployment = {
      prefix: prefixes.servers,
      balancerPrefix,
      balancers,
      backends: [],
    };
    for (const b of backends) this.startBackend(deployment, b.slowdown, b.label, b.extra);
    try {
      await waitForBalancers(deployment);
      await Promise.all(deployment.backends.map(waitForStats));
    } catch (error) {
      await this.stopDeployment(deployment);
      throw error;
    }
    return deployment;
  }

  /**
   * Starts one more backend of `deployment`, registered under its prefix, with `extra` flags (an
   * emulated backend's service time and capacity).
   */
  startBackend(
    deployment: Deployment,
    slowdown: number,
    label: string,
    extra: string[] = [],
  ): Backend {
    const port = freePort();
    const process = this.spawn("backend", [
      ...this.#etcdFlags(port, deployment.prefix),
      ...(deployment.balancerPrefix === undefined
        ? ["--balancer", deployment.balancers[0].address]
        : ["--balancer-prefix", deployment.balancerPrefix]),
      // An emulated backend's speed is its capacity, in `extra`.
      ...(extra.includes("--service-time")
        ? []
        : ["--slowdown", String(slowdown), "--work-units", String(this.#options.workUnits)]),
      "--report-interval-ms",
      String(this.#options.reportIntervalMs),
      ...extra,
      "--log-level",
      "warning",
    ], { name: `backend ${label}` });
    const address = `127.0.0.1:${port}`;
    const backend: Backend = {
      label,
      slowdown,
      address,
      process,
      client: createBackendClient(address, undefined, undefined, POLLING_CHANNEL_OPTIONS),
      killed: false,
      joined: false,
      usage: new Map(),
    };
    deployment.backends.push(backend);
    return backend;
  }

  /** Kills `backend` (SIGKILL); it stays in its deployment, marked killed. */
  killBackend(backend: Backend): void {
    backend.killed = true;
    backend.label += " (killed)";
    backend.process.signal("SIGKILL");
  }

  /** Stops the balancers and backends of `deployment`. */
  async stopDeployment(deployment: Deployment): Promise<void> {
    for (const b of deployment.balancers) b.lb.close();
    for (const b of deployment.backends) b.client.close();
    await Promise.all(
      [...deployment.balancers, ...deployment.backends].map((b) => b.process.stop()),
    );
  }

  /**
   * Starts a balancer on a free port for `GetServer` alone: three servers registered under the
   * scenario's lookup prefix, which lookups never dial, so bare addresses are enough (and the
   * balancer's health checks are off, as nothing answers there).
   */
  async startLookupBalancer(
    scenario: ScenarioName,
  ): Promise<{ server: EntryProcess; port: number }> {
    const prefix = `/bench/${scenario}/lookups/`;
    const { createEtcdClient } = await import("../etcd/etcd_client.ts");
    const etcd = createEtcdClient([this.etcdEndpoint]);
    try {
      for (let i = 1; i <= 3; i++) {
        await etcd.put(`${prefix}127.0.0.1:${60_000 + i}`).value(`127.0.0.1:${60_000 + i}`);
      }
    } finally {
      etcd.close();
    }
    const port = freePort();
    return { server: this.spawnBalancer(port, prefix, ["--health-interval-ms", "0"]), port };
  }

  /** Starts the `echo` baseline (lib/bench/echo_baseline.ts) on `port`. */
  startEcho(port: number): EntryProcess {
    return this.spawn("balancer", ["--port", String(port)], {
      script: "lib/bench/echo_baseline.ts",
      name: "echo",
    });
  }

  /**
   * Starts the load clients of one run: `count` of them (one per task in flight at most), the
   * `i`th with `args(i)`, sharing `concurrency` (and, open loop, `rate` tasks a second) and
   * printing JSON progress and summary lines.
   */
  startClients(
    args: (i: number) => string[],
    concurrency: number,
    durationS: number,
    count: number,
    rate?: number,
  ): EntryProcess[] {
    const n = Math.max(1, Math.min(count, concurrency));
    return Array.from({ length: n }, (_, i) => {
      const share = Math.floor(concurrency / n) + (i < concurrency % n ? 1 : 0);
      return this.spawn("client", [
        ...args(i),
        ...(rate === undefined ? [] : ["--rate", String(rate / n)]),
        "--duration",
        String(durationS),
        "--concurrency",
        String(share),
        "--client-id",
        `bench-${i}`,
        // Many users behind each load client, so consistent_hash has keys to spread.
        "--client-ids",
        "1000",
        "--json",
        "--histogram",
        "--progress-ms",
        "250",
      ], { name: `client ${i}`, captureStdout: true });
    });
  }

  #etcdFlags(port: number, prefix: string): string[] {
    return ["--port", String(port), "--etcd", this.etcdEndpoint, "--etcd-prefix", prefix];
  }
}

/** A client of the balancer at `address`. */
export function lbClient(address: string): LoadBalancerClient {
  return createLoadBalancerClient(address, undefined, undefined, POLLING_CHANNEL_OPTIONS);
}

/** The backends of `deployment` that were not killed. */
export function liveBackends(deployment: Deployment): Backend[] {
  return deployment.backends.filter((b) => !b.killed);
}

/** Throws with its log if any of `processes` has exited. */
export function throwIfExited(processes: EntryProcess[]): void {
  const dead = processes.find((p) => p.exited);
  if (dead) throw new Error(`${dead.name} exited:\n${dead.log()}`);
}

/** Reads the stats of every live backend of `deployment` (see {@linkcode readStats}). */
export async function readLiveStats(deployment: Deployment): Promise<void> {
  await Promise.all(liveBackends(deployment).map(readStats));
}

/**
 * Reads `backend`'s stats into `last` (and `first`, on its first read). A backend that is being
 * killed or is still starting does not answer: its last stats stand.
 */
export async function readStats(backend: Backend): Promise<void> {
  try {
    keepStats(backend, await getStats(backend));
  } catch {
    // Its last stats stand.
  }
}

/** Waits until `backend` answers GetStats (throws if it exited), and keeps the stats. */
async function waitForStats(backend: Backend): Promise<void> {
  const stats = await waitFor(
    `${backend.label} to answer GetStats`,
    () => {
      if (backend.process.exited) {
        throw new Error(`${backend.label} exited:\n${backend.process.log()}`);
      }
      return getStats(backend);
    },
    20_000,
    50,
  );
  keepStats(backend, stats);
}

function getStats(backend: Backend): Promise<StatsResponse> {
  return unary(backend.client.GetStats, backend.client, {}, { deadline: Date.now() + 1_000 });
}

function keepStats(backend: Backend, stats: StatsResponse): void {
  if (backend.first === undefined) backend.first = stats;
  backend.last = stats;
}

/** Waits until every balancer lists every live backend with a load report. */
async function waitForBalancers(deployment: Deployment): Promise<void> {
  const live = liveBackends(deployment);
  await waitFor(
    `the balancer to list ${live.length} backends`,
    async () => {
      throwIfExited([...deployment.balancers, ...live].map((b) => b.process));
      const lists = await Promise.all(
        deployment.balancers.map(({ lb }) =>
          unary(lb.ListServers, lb, {}, { deadline: Date.now() + 1_000 })
        ),
      );
      return lists.every((list) => list.servers.filter((s) => s.has_load).length >= live.length);
    },
    30_000,
    50,
  );
}
