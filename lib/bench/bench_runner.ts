/**
 * Runs the end-to-end benchmark: a real etcd, balancer, backends and load clients, each its own
 * process, for every scenario and every target (each policy in each client mode, and the
 * `direct` and `echo` baselines), all in one run so the figures compare.
 *
 * Where a scenario leaves its servers as it found them, every target runs against the same
 * balancer and backends: the policy is switched with `SetPolicy` and the backends drain between
 * targets, so a target differs from the next by its policy alone (and the suite is quick). Churn
 * and slow start change the servers, so each of their targets gets fresh ones.
 *
 * Every process started is tracked, so {@linkcode BenchRunner.abort} (Ctrl-C) and failures tear
 * everything down: no orphan process, no leftover etcd data.
 *
 * @module
 */
import type { PolicyName } from "../../policies/mod.ts";
import { type EntryProcess, spawnEntry } from "../harness/entry_process.ts";
import { type EtcdProcess, startEtcd } from "../harness/etcd_process.ts";
import { LatencyRecorder, type LatencySummary } from "../client/latency.ts";
import type { LoadProgress, LoadRunSummary } from "../client/load_run.ts";
import { freePort } from "../harness/ports.ts";
import {
  type BackendClient,
  createBackendClient,
  createLoadBalancerClient,
  type LoadBalancerClient,
  POLLING_CHANNEL_OPTIONS,
  type StatsResponse,
  unary,
} from "../wire/proto.ts";
import { runScale, type ScaleFigures } from "./bench_scale.ts";
import { type Scenario, type ScenarioName, SCENARIOS } from "./bench_scenarios.ts";
import type { ClientMode } from "../client/task_client.ts";
import { waitFor } from "../harness/wait.ts";

/** What a run is measured against: a policy (in a client mode), or a baseline. */
export interface Target {
  policy: PolicyName | "direct" | "echo";
  mode: ClientMode;
  /** Balancer replicas the load goes through (the `replicas` scenario); 1 when absent. */
  balancers?: number;
  /** The balancers run with `--replica-unaware`: each counts its own picks once (the trap). */
  replicaUnaware?: boolean;
}

/**
 * `least_load`, `least_load (watch)`, `least_load (2 balancers)`,
 * `least_load (2 balancers, replica-unaware)`, `direct`.
 */
export function targetLabel(target: Target): string {
  const label = target.mode === "watch" ? `${target.policy} (watch)` : target.policy;
  if ((target.balancers ?? 1) === 1) return label;
  return `${label} (${target.balancers} balancers${
    target.replicaUnaware ? ", replica-unaware" : ""
  })`;
}

/** Options of {@linkcode BenchRunner}. */
export interface BenchOptions {
  scenarios: ScenarioName[];
  policies: PolicyName[];
  /** Client modes to run each policy in. */
  modes: ClientMode[];
  /** Scenarios that run the `watch` mode (when it is in `modes`); `undefined`: all. */
  watchScenarios?: ScenarioName[];
  /** Seconds of load per scenario and target (split over the rounds). */
  durationS: number;
  /**
   * Where the servers are shared, every target runs this many times, interleaved (round 1 of
   * every target, then round 2...), so a drift of the machine's speed during the benchmark
   * touches every target alike; the rounds are merged.
   */
  rounds: number;
  /** Tasks in flight; `undefined` takes each scenario's own. */
  concurrency?: number;
  /** Load client processes per run (the concurrency is split between them). */
  clients: number;
  /** Work units per CPU-heavy task. */
  workUnits: number;
  /** Backends' load report period. */
  reportIntervalMs: number;
  /** Where etcd keeps its data while the run lasts (removed after). */
  etcdDir: string;
  /**
   * Serve each scenario's balancer dashboard on this port of 127.0.0.1 (the scenarios run one
   * after another, so one port serves them all in turn); off when absent.
   */
  httpPort?: number;
  /** `--quick`: the `scale` scenario runs its small size. */
  quick?: boolean;
}

/** One server's share of a run. */
export interface ServerResult {
  /** `s1`, `s2`, ... in start order, with a note such as `x4 slow` or `killed`. */
  label: string;
  address: string;
  slowdown: number;
  requests: number;
  /** CPU used during the run, in percent of one core (workers included). */
  cpuPercent: number | undefined;
  /** Tasks in flight at the server (queued included), sampled 4 times a second: mean and max. */
  inFlight?: { mean: number; max: number };
}

/** One second of a run: tasks each server completed, and the clients' p99 in that second. */
export interface TimelinePoint {
  atS: number;
  p99Ms: number;
  /** Tasks completed in this second, by server label. */
  completed: Record<string, number>;
}

/** One scenario × target measurement. */
export interface RunResult {
  scenario: ScenarioName;
  /** Label of the target, e.g. `least_load (watch)`. */
  target: string;
  policy: Target["policy"];
  mode: ClientMode;
  /**
   * `tasks` (lookup + task, or the task alone for `direct`), `lookups` (GetServer alone), or
   * `scale` (the `scale` scenario: its figures are in `scale`, its GetServer round trips in
   * `latencyMs`).
   */
  kind: "tasks" | "lookups" | "scale";
  concurrency: number;
  durationS: number;
  completed: number;
  failed: number;
  failuresByCode: Record<string, number>;
  retried: number;
  /** Completed per second. */
  throughput: number;
  latencyMs: LatencySummary;
  servers: ServerResult[];
  /** Busiest server's CPU over the average, among servers up for the whole run. */
  cpuBusiestOverMean: number | undefined;
  /**
   * Mean, over the in-flight samples, of the largest share of the tasks in flight that one server
   * held (1/servers when even, 1 when one server held them all): herding shows here.
   */
  inFlightTopShare?: number;
  /** What happened during the run (churn, joins), with the second it happened at. */
  events: { atS: number; what: string }[];
  timeline: TimelinePoint[];
  /** The `scale` scenario's figures. */
  scale?: ScaleFigures;
}

/** A progress sample for the bar. */
export interface BenchProgress {
  /** `homogeneous / round_robin`. */
  label: string;
  /** Index of this run (1-based) and how many there are. */
  run: number;
  runs: number;
  elapsedS: number;
  totalS: number;
  /** Completed per second so far in this run. */
  rate: number;
}

interface Backend {
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

/** What one run of a target measured, before its rounds are merged. */
interface RawRun {
  summaries: LoadRunSummary[];
  durationS: number;
  events: RunResult["events"];
  timeline: TimelinePoint[];
  /** Tasks in flight at each live server (by address), one sample per tick. */
  inFlight: Record<string, number>[];
}

/** A balancer replica beyond the first (the `replicas` scenario). */
interface Replica {
  address: string;
  process: EntryProcess;
  lb: LoadBalancerClient;
}

/** A balancer (and its replicas, if any) with its backends, for one or more targets. */
interface Environment {
  prefix: string;
  balancerAddress: string;
  balancer: EntryProcess;
  lb: LoadBalancerClient;
  /**
   * The `replicas` scenario: where the balancers register, the backends then reporting to every
   * balancer found there instead of to `balancerAddress` alone.
   */
  balancerPrefix?: string;
  replicas: Replica[];
  backends: Backend[];
}

const LOOKUP_SECONDS_SHARE = 0.5;

/** Runs the benchmark. One instance per run. */
export class BenchRunner {
  #options: BenchOptions;
  #children = new Set<EntryProcess>();
  #etcd: EtcdProcess | undefined;
  #aborted = false;
  #onProgress: (p: BenchProgress) => void;
  #run = 0;
  #runs: number;
  #environments = 0;

  /** Creates a runner; `onProgress` is called a few times per second. */
  constructor(options: BenchOptions, onProgress: (p: BenchProgress) => void = () => {}) {
    this.#options = options;
    this.#onProgress = onProgress;
    const lookups = options.policies.length + 1;
    this.#runs = options.scenarios.reduce(
      (n, s) =>
        n + (SCENARIOS[s].fleet ? 1 : this.#targets(s).length * this.#rounds(SCENARIOS[s])) +
        (SCENARIOS[s].lookups ? lookups : 0),
      0,
    );
  }

  /** Number of runs (scenario × target) the benchmark will make. */
  get runs(): number {
    return this.#runs;
  }

  /** Runs every scenario for every target; tears everything down at the end. */
  async run(): Promise<RunResult[]> {
    const results: RunResult[] = [];
    try {
      this.#etcd = await startEtcd({ parentDir: this.#options.etcdDir });
      for (const name of this.#options.scenarios) {
        const scenario = SCENARIOS[name];
        if (scenario.fleet) {
          results.push(await this.#scale(scenario));
          continue;
        }
        results.push(...await this.#scenario(scenario));
        if (scenario.lookups) results.push(...await this.#lookups(scenario));
      }
      return results;
    } finally {
      await this.#teardown();
    }
  }

  /** Stops every process started (Ctrl-C). */
  async abort(): Promise<void> {
    this.#aborted = true;
    await this.#teardown();
  }

  #targets(scenario: ScenarioName): Target[] {
    const o = this.#options;
    const modes = o.modes.filter((mode) =>
      mode !== "watch" || o.watchScenarios === undefined || o.watchScenarios.includes(scenario)
    );
    const balancers = SCENARIOS[scenario].balancers;
    if (balancers !== undefined) {
      return o.policies.flatMap((policy): Target[] => [
        { policy, mode: "lookaside" },
        { policy, mode: "lookaside", balancers },
        { policy, mode: "lookaside", balancers, replicaUnaware: true },
      ]);
    }
    return [
      ...modes.flatMap((mode) => o.policies.map((policy): Target => ({ policy, mode }))),
      { policy: "direct", mode: "lookaside" },
    ];
  }

  async #teardown(): Promise<void> {
    await Promise.all([...this.#children].map((child) => child.stop(3_000)));
    this.#children.clear();
    await this.#etcd?.close().catch(() => {});
    this.#etcd = undefined;
  }

  #spawn(...args: Parameters<typeof spawnEntry>): EntryProcess {
    if (this.#aborted) throw new Error("The benchmark was stopped");
    const child = spawnEntry(...args);
    this.#children.add(child);
    child.status.then(() => this.#children.delete(child));
    return child;
  }

  /**
   * Churn and slow start change their servers, and replicas change the balancers: one run per
   * target, on fresh servers.
   */
  #rounds(scenario: Scenario): number {
    return fresh(scenario) ? 1 : this.#options.rounds;
  }

  async #scenario(scenario: Scenario): Promise<RunResult[]> {
    const isFresh = fresh(scenario);
    const rounds = this.#rounds(scenario);
    const targets = this.#targets(scenario.name);
    const raw = new Map<Target, RawRun[]>(targets.map((t) => [t, []]));
    const backends = new Map<Target, Backend[]>();
    let shared: Environment | undefined;
    try {
      for (let round = 1; round <= rounds; round++) {
        for (const target of targets) {
          const env = isFresh
            ? await this.#startEnvironment(scenario, target)
            : shared ??= await this.#startEnvironment(scenario);
          try {
            const label = rounds > 1 ? ` [${round}/${rounds}]` : "";
            raw.get(target)!.push(
              await this.#taskRun(scenario, target, env, this.#options.durationS / rounds, label),
            );
            backends.set(target, env.backends);
          } finally {
            if (isFresh) await this.#stopEnvironment(env);
          }
        }
      }
      return targets.map((target) => {
        const runs = raw.get(target)!;
        return this.#result(
          scenario,
          target,
          "tasks",
          this.#options.concurrency ?? scenario.concurrency,
          runs.flatMap((r) => r.summaries),
          sum(runs.map((r) => r.durationS)),
          backends.get(target)!,
          runs.flatMap((r) => r.events),
          runs.flatMap((r) => r.timeline),
          runs.flatMap((r) => r.inFlight),
        );
      });
    } finally {
      if (shared) await this.#stopEnvironment(shared);
    }
  }

  /** Starts the balancers and backends; `target` says how many balancers, and their flags. */
  async #startEnvironment(scenario: Scenario, target?: Target): Promise<Environment> {
    const balancers = target?.balancers ?? 1;
    const n = ++this.#environments;
    const prefix = `/bench/${scenario.name}/${n}/`;
    // Outside the servers' prefix, so a balancer is never taken for a server.
    const balancerPrefix = scenario.balancers === undefined
      ? undefined
      : `/bench-balancers/${scenario.name}/${n}/`;
    const registry = [
      ...(balancerPrefix === undefined ? [] : ["--balancer-prefix", balancerPrefix]),
      ...(target?.replicaUnaware ? ["--replica-unaware"] : []),
    ];
    const port = freePort();
    const balancerAddress = `127.0.0.1:${port}`;
    const balancer = this.#spawnBalancer(port, prefix, registry);
    const replicas = Array.from({ length: balancers - 1 }, (_, i): Replica => {
      const replicaPort = freePort();
      const address = `127.0.0.1:${replicaPort}`;
      return {
        address,
        // The dashboard port, if any, is the first balancer's.
        process: this.#spawnBalancer(replicaPort, prefix, registry, false, `balancer ${i + 2}`),
        lb: createLoadBalancerClient(address, undefined, undefined, POLLING_CHANNEL_OPTIONS),
      };
    });
    const env: Environment = {
      prefix,
      balancerAddress,
      balancer,
      lb: createLoadBalancerClient(balancerAddress, undefined, undefined, POLLING_CHANNEL_OPTIONS),
      balancerPrefix,
      replicas,
      backends: [],
    };
    scenario.slowdowns.forEach((slowdown, i) =>
      this.#startBackend(env, slowdown, `s${i + 1}${slowdown !== 1 ? ` (x${slowdown} slow)` : ""}`)
    );
    try {
      await this.#waitForBalancer(env);
      await Promise.all(env.backends.map((b) => this.#readStats(b, true, 20_000)));
    } catch (error) {
      await this.#stopEnvironment(env);
      throw error;
    }
    return env;
  }

  #startBackend(env: Environment, slowdown: number, label: string): Backend {
    const o = this.#options;
    const port = freePort();
    const process = this.#spawn("backend", [
      "--port",
      String(port),
      "--etcd",
      this.#etcd!.endpoint,
      "--etcd-prefix",
      env.prefix,
      ...(env.balancerPrefix === undefined
        ? ["--balancer", env.balancerAddress]
        : ["--balancer-prefix", env.balancerPrefix]),
      "--slowdown",
      String(slowdown),
      "--work-units",
      String(o.workUnits),
      "--report-interval-ms",
      String(o.reportIntervalMs),
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
    env.backends.push(backend);
    return backend;
  }

  #spawnBalancer(
    port: number,
    prefix: string,
    extra: string[] = [],
    dashboard = true,
    name = "balancer",
  ): EntryProcess {
    const http = this.#options.httpPort === undefined || !dashboard
      ? []
      : ["--http-port", String(this.#options.httpPort)];
    return this.#spawn("balancer", [
      ...http,
      ...extra,
      "--port",
      String(port),
      "--etcd",
      this.#etcd!.endpoint,
      "--etcd-prefix",
      prefix,
      "--log-level",
      "warning",
    ], { name });
  }

  async #stopEnvironment(env: Environment): Promise<void> {
    for (const lb of lbsOf(env)) lb.close();
    for (const b of env.backends) b.client.close();
    await Promise.all(
      [env.balancer, ...env.replicas.map((r) => r.process), ...env.backends.map((b) => b.process)]
        .map((p) => p.stop()),
    );
  }

  /** Waits until every balancer lists every live backend with a load report. */
  async #waitForBalancer(env: Environment): Promise<void> {
    const live = env.backends.filter((b) => !b.killed);
    const processes = [env.balancer, ...env.replicas.map((r) => r.process)];
    await waitFor(
      `the balancer to list ${live.length} backends`,
      async () => {
        const dead = [...processes, ...live.map((b) => b.process)].find((p) => p.exited);
        if (dead) throw new Error(`${dead.name} exited:\n${dead.log()}`);
        const lists = await Promise.all(
          lbsOf(env).map((lb) => unary(lb.ListServers, lb, {}, { deadline: Date.now() + 1_000 })),
        );
        return lists.every((list) => list.servers.filter((s) => s.has_load).length >= live.length);
      },
      30_000,
      50,
    );
  }

  /** One scenario × target with tasks. */
  async #taskRun(
    scenario: Scenario,
    target: Target,
    env: Environment,
    durationS: number,
    roundLabel: string,
  ): Promise<RawRun> {
    const o = this.#options;
    const runIndex = ++this.#run;
    if (target.policy !== "direct") {
      await Promise.all(
        lbsOf(env).map((lb) =>
          unary(lb.SetPolicy, lb, { policy: target.policy }, { deadline: Date.now() + 5_000 })
        ),
      );
    }
    // Every target starts from idle backends, whatever the previous one left queued.
    await waitFor(
      "the backends to drain",
      async () => {
        await Promise.all(env.backends.filter((b) => !b.killed).map((b) => this.#readStats(b)));
        return env.backends.every((b) => b.killed || b.last?.in_flight === 0);
      },
      60_000,
      100,
    );
    for (const b of env.backends) b.first = b.last;

    const concurrency = o.concurrency ?? scenario.concurrency;
    // The replicas scenario runs as many load clients through one balancer as through several.
    const clients = Math.max(o.clients, scenario.balancers ?? 1);
    const addresses = [env.balancerAddress, ...env.replicas.map((r) => r.address)];
    const clientArgs = (i: number) => [
      "--task",
      scenario.task,
      "--mode",
      target.mode,
      ...(target.policy === "direct"
        ? ["--direct", env.backends.map((b) => b.address).join(",")]
        : ["--balancer", addresses[i % addresses.length]]),
    ];
    const events: RunResult["events"] = [];
    const timeline: TimelinePoint[] = [];
    const inFlight: RawRun["inFlight"] = [];
    let nextSecond = 1;
    let lastCompleted = new Map(env.backends.map((b) => [b, completedOf(b)]));
    const label = `${scenario.name} / ${targetLabel(target)}${roundLabel}`;
    const summaries = await this.#runClients(
      label,
      runIndex,
      clientArgs,
      concurrency,
      durationS,
      clients,
      async (elapsedS, windowP99Ms) => {
        await Promise.all(env.backends.filter((b) => !b.killed).map((b) => this.#readStats(b)));
        inFlight.push(
          Object.fromEntries(
            env.backends.filter((b) => !b.killed).map((b) => [b.address, b.last?.in_flight ?? 0]),
          ),
        );
        if (elapsedS >= nextSecond) {
          nextSecond++;
          const completed: Record<string, number> = {};
          for (const b of env.backends) {
            completed[b.label] = completedOf(b) - (lastCompleted.get(b) ?? completedOf(b));
          }
          lastCompleted = new Map(env.backends.map((b) => [b, completedOf(b)]));
          timeline.push({ atS: Math.round(elapsedS), p99Ms: windowP99Ms, completed });
        }
        const first = env.backends[0];
        if (scenario.churn && elapsedS >= durationS / 3 && !first.killed) {
          first.killed = true;
          first.label += " (killed)";
          first.process.signal("SIGKILL");
          events.push({ atS: round(elapsedS, 2), what: `${first.address} killed` });
        }
        const joinAt = scenario.churn ? (2 * durationS) / 3 : durationS / 3;
        if (
          (scenario.churn || scenario.joins) && elapsedS >= joinAt &&
          !env.backends.some((b) => b.joined)
        ) {
          const joined = this.#startBackend(env, 1, `s${env.backends.length + 1} (joined)`);
          joined.joined = true;
          events.push({ atS: round(elapsedS, 2), what: `${joined.address} started` });
        }
      },
    );
    await Promise.all(env.backends.filter((b) => !b.killed).map((b) => this.#readStats(b)));
    for (const b of env.backends) addUsage(b, targetLabel(target));
    return {
      summaries,
      durationS: Math.max(...summaries.map((s) => s.durationS)),
      events,
      timeline,
      inFlight,
    };
  }

  /** The `scale` scenario (lib/bench/bench_scale.ts): one result with its figures. */
  async #scale(scenario: Scenario): Promise<RunResult> {
    const runIndex = ++this.#run;
    const startedAt = performance.now();
    const figures = await runScale({
      spawn: (...args) => this.#spawn(...args),
      spawnBalancer: (port, prefix, extra) => this.#spawnBalancer(port, prefix, extra),
      etcdEndpoint: this.#etcd!.endpoint,
      prefix: `/bench/${scenario.name}/${++this.#environments}/`,
      httpPort: this.#options.httpPort,
      policies: this.#options.policies,
      concurrency: this.#options.concurrency ?? scenario.concurrency,
      size: this.#options.quick ? scenario.fleet!.quick : scenario.fleet!.full,
      progress: (what, fraction) => {
        const elapsedS = (performance.now() - startedAt) / 1_000;
        this.#onProgress({
          label: `scale / ${what}`,
          run: runIndex,
          runs: this.#runs,
          elapsedS,
          totalS: Math.max(elapsedS, Math.round(elapsedS / Math.max(fraction, 0.05))),
          rate: 0,
        });
      },
    });
    return {
      scenario: scenario.name,
      target: "scale",
      policy: "round_robin",
      mode: "lookaside",
      kind: "scale",
      concurrency: this.#options.concurrency ?? scenario.concurrency,
      durationS: round((performance.now() - startedAt) / 1_000, 2),
      completed: figures.getServerCalls,
      failed: 0,
      failuresByCode: {},
      retried: 0,
      throughput: 0,
      latencyMs: figures.getServerRoundTripMs,
      servers: [],
      cpuBusiestOverMean: undefined,
      events: [],
      timeline: [],
      scale: figures,
    };
  }

  /** `GetServer` alone for each policy (switched with SetPolicy) and for the echo server. */
  async #lookups(scenario: Scenario): Promise<RunResult[]> {
    const results: RunResult[] = [];
    const prefix = `/bench/${scenario.name}/lookups/`;
    // Three registered servers; lookups never dial them, so bare addresses are enough (with the
    // balancer's health checks off, as nothing answers there).
    const { createEtcdClient } = await import("../etcd/etcd_client.ts");
    const etcd = createEtcdClient([this.#etcd!.endpoint]);
    try {
      for (let i = 1; i <= 3; i++) {
        await etcd.put(`${prefix}127.0.0.1:${60_000 + i}`).value(`127.0.0.1:${60_000 + i}`);
      }
    } finally {
      etcd.close();
    }
    const port = freePort();
    const address = `127.0.0.1:${port}`;
    const concurrency = this.#options.concurrency ?? scenario.concurrency;
    const durationS = Math.max(0.3, this.#options.durationS * LOOKUP_SECONDS_SHARE);
    const measure = async (target: Target) => {
      const runIndex = ++this.#run;
      const summaries = await this.#runClients(
        `${scenario.name} / ${target.policy} lookups`,
        runIndex,
        () => ["--task", "lookup", "--balancer", address],
        concurrency,
        durationS,
        this.#options.clients,
        () => Promise.resolve(),
      );
      return this.#result(
        scenario,
        target,
        "lookups",
        concurrency,
        summaries,
        Math.max(...summaries.map((s) => s.durationS)),
        [],
        [],
        [],
      );
    };
    /** Measures each of `policies` on `server` (switched with SetPolicy), then stops it. */
    const serve = async (server: EntryProcess, policies: (PolicyName | "echo")[]) => {
      const lb = createLoadBalancerClient(address, undefined, undefined, POLLING_CHANNEL_OPTIONS);
      try {
        for (const policy of policies) {
          await waitFor(
            `${server.name} to answer GetServer`,
            async () => {
              if (server.exited) throw new Error(`${server.name} exited:\n${server.log()}`);
              await unary(lb.GetServer, lb, { client_id: "b" }, { deadline: Date.now() + 1_000 });
              return true;
            },
            20_000,
            50,
          );
          if (policy !== "echo") {
            await unary(lb.SetPolicy, lb, { policy }, { deadline: Date.now() + 5_000 });
          }
          results.push(await measure({ policy, mode: "lookaside" }));
        }
      } finally {
        lb.close();
        await server.stop();
      }
    };
    await serve(
      this.#spawnBalancer(port, prefix, ["--health-interval-ms", "0"]),
      this.#options.policies,
    );
    await serve(
      this.#spawn("balancer", ["--port", String(port)], {
        script: "lib/bench/echo_baseline.ts",
        name: "echo",
      }),
      ["echo"],
    );
    return results;
  }

  async #readStats(backend: Backend, first = false, timeoutMs = 2_000): Promise<void> {
    const read = () =>
      unary(backend.client.GetStats, backend.client, {}, { deadline: Date.now() + 1_000 });
    try {
      const stats = first
        ? await waitFor(
          `${backend.label} to answer GetStats`,
          () => {
            if (backend.process.exited) {
              throw new Error(`${backend.label} exited:\n${backend.process.log()}`);
            }
            return read();
          },
          timeoutMs,
          50,
        )
        : await read();
      if (backend.first === undefined) backend.first = stats;
      backend.last = stats;
    } catch (error) {
      if (first) throw error;
      // A backend that is being killed or is still starting: its last stats stand.
    }
  }

  /**
   * Starts `clients` load clients (the `i`th with `args(i)`), drives the progress bar and `tick`,
   * merges their summaries.
   */
  async #runClients(
    label: string,
    runIndex: number,
    args: (i: number) => string[],
    concurrency: number,
    durationS: number,
    clientCount: number,
    tick: (elapsedS: number, windowP99Ms: number) => Promise<void>,
  ): Promise<LoadRunSummary[]> {
    const count = Math.max(1, Math.min(clientCount, concurrency));
    const clients = Array.from({ length: count }, (_, i) => {
      const share = Math.floor(concurrency / count) + (i < concurrency % count ? 1 : 0);
      return this.#spawn("client", [
        ...args(i),
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
    // The run's clock starts when every client has started sending (its first progress line),
    // so events land at the same point of the load for every target.
    await waitFor(
      "the load clients to start",
      () => {
        const dead = clients.find((c) => c.exited && lastProgress(c.stdout()) === undefined);
        if (dead) throw new Error(`${dead.name} exited:\n${dead.log()}`);
        return clients.every((c) => lastProgress(c.stdout()) !== undefined);
      },
      20_000,
      10,
    );
    const t0 = performance.now();
    let ticking = false;
    let windowP99 = 0;
    const timer = setInterval(() => {
      const elapsedS = (performance.now() - t0) / 1_000;
      const progress = clients.map((c) => lastProgress(c.stdout()));
      const completed = progress.reduce((n, p) => n + (p?.completed ?? 0), 0);
      windowP99 = Math.max(windowP99, ...progress.map((p) => p?.windowP99Ms ?? 0));
      this.#onProgress({
        label,
        run: runIndex,
        runs: this.#runs,
        elapsedS: Math.min(elapsedS, durationS),
        totalS: durationS,
        rate: elapsedS > 0 ? completed / elapsedS : 0,
      });
      if (!ticking) {
        ticking = true;
        const p99 = windowP99;
        windowP99 = 0;
        tick(elapsedS, p99).finally(() => ticking = false);
      }
    }, 250);
    try {
      const statuses = await Promise.all(clients.map((c) => c.status));
      return clients.map((client, i) => {
        const summary = lastLine(client.stdout());
        if (statuses[i].code !== 0 && summary?.requests === undefined) {
          throw new Error(`${client.name} failed (${statuses[i].code}):\n${client.log()}`);
        }
        return summary as unknown as LoadRunSummary;
      });
    } finally {
      clearInterval(timer);
      while (ticking) await new Promise((r) => setTimeout(r, 10));
    }
  }

  #result(
    scenario: Scenario,
    target: Target,
    kind: RunResult["kind"],
    concurrency: number,
    summaries: LoadRunSummary[],
    durationS: number,
    backends: Backend[],
    events: RunResult["events"],
    timeline: TimelinePoint[],
    inFlight: RawRun["inFlight"] = [],
  ): RunResult {
    const latency = LatencyRecorder.merge(summaries.map((s) => s.histogram));
    const completed = sum(summaries.map((s) => s.succeeded));
    const failuresByCode: Record<string, number> = {};
    for (const s of summaries) {
      for (const [code, n] of Object.entries(s.failuresByCode)) {
        failuresByCode[code] = (failuresByCode[code] ?? 0) + n;
      }
    }
    const servers = backends.map((b): ServerResult => ({
      label: b.label,
      address: b.address,
      slowdown: b.slowdown,
      requests: sum(summaries.map((s) => s.perServer[b.address] ?? 0)),
      cpuPercent: cpuPercent(b, targetLabel(target)),
      inFlight: inFlightOf(inFlight.map((sample) => sample[b.address])),
    }));
    const steady = servers.filter((s, i) =>
      !backends[i].killed && !backends[i].joined && s.cpuPercent !== undefined
    );
    const meanCpu = sum(steady.map((s) => s.cpuPercent!)) / steady.length;
    return {
      scenario: scenario.name,
      target: targetLabel(target),
      policy: target.policy,
      mode: target.mode,
      kind,
      concurrency,
      durationS: round(durationS, 2),
      completed,
      failed: sum(summaries.map((s) => s.failed)),
      failuresByCode,
      retried: sum(summaries.map((s) => s.retried)),
      throughput: round(durationS > 0 ? completed / durationS : 0, 2),
      latencyMs: latency.summary(),
      servers,
      cpuBusiestOverMean: steady.length > 1 && meanCpu > 0
        ? round(Math.max(...steady.map((s) => s.cpuPercent!)) / meanCpu, 3)
        : undefined,
      inFlightTopShare: topShare(inFlight),
      events,
      timeline,
    };
  }
}

/** Whether each target of `scenario` runs on servers (and balancers) of its own. */
function fresh(scenario: Scenario): boolean {
  return scenario.churn || scenario.joins || scenario.balancers !== undefined;
}

/** Clients of every balancer of `env`, the first one first. */
function lbsOf(env: Environment): LoadBalancerClient[] {
  return [env.lb, ...env.replicas.map((r) => r.lb)];
}

function completedOf(b: Backend): number {
  return (b.last?.simple_completed ?? 0) + (b.last?.heavy_completed ?? 0);
}

/** Adds the CPU and wall time between `b.first` and `b.last` to the target's tally. */
function addUsage(b: Backend, target: string): void {
  if (!b.first || !b.last || b.last === b.first) return;
  const tally = b.usage.get(target) ?? { cpuUs: 0, wallUs: 0 };
  tally.cpuUs += b.last.cpu_user_us + b.last.cpu_system_us -
    (b.first.cpu_user_us + b.first.cpu_system_us);
  tally.wallUs += (b.last.uptime_ms - b.first.uptime_ms) * 1_000;
  b.usage.set(target, tally);
}

/** CPU use of `b` during the target's runs, in percent of one core. */
function cpuPercent(b: Backend, target: string): number | undefined {
  const tally = b.usage.get(target);
  return tally && tally.wallUs > 0 ? round((100 * tally.cpuUs) / tally.wallUs, 1) : undefined;
}

/** Mean and max of one server's in-flight samples (those taken while it was up). */
function inFlightOf(samples: (number | undefined)[]): ServerResult["inFlight"] {
  const up = samples.filter((n): n is number => n !== undefined);
  if (up.length === 0) return undefined;
  return { mean: round(sum(up) / up.length, 1), max: Math.max(...up) };
}

/** Mean, over the samples with any task in flight, of the largest server's share of them. */
function topShare(samples: RawRun["inFlight"]): number | undefined {
  const shares = samples.flatMap((sample) => {
    const counts = Object.values(sample);
    const total = sum(counts);
    return total > 0 ? [Math.max(...counts) / total] : [];
  });
  return shares.length ? round(sum(shares) / shares.length, 3) : undefined;
}

function lastLine(text: string): Record<string, unknown> | undefined {
  const lines = text.trim().split("\n").filter((l) => l.startsWith("{"));
  try {
    return lines.length ? JSON.parse(lines[lines.length - 1]) : undefined;
  } catch {
    return undefined;
  }
}

function lastProgress(text: string): LoadProgress | undefined {
  const end = text.lastIndexOf('{"progress":');
  if (end < 0) return undefined;
  const newline = text.indexOf("\n", end);
  const line = newline < 0 ? text.slice(end) : text.slice(end, newline);
  try {
    return JSON.parse(line).progress;
  } catch {
    return undefined;
  }
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
