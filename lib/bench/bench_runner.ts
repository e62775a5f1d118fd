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
 * The processes are bench_environment.ts's, one run's measurement is bench_measure.ts's, and the
 * records it returns are bench_results.ts's. {@linkcode BenchRunner.abort} (Ctrl-C) and failures
 * tear every process down.
 *
 * @module
 */
import type { PolicyName } from "../../policies/mod.ts";
import type { ClientMode } from "../client/task_client.ts";
import { type Backend, BenchEnvironment, type Deployment } from "./bench_environment.ts";
import { measureLookups, measureTasks, type RunProgress } from "./bench_measure.ts";
import {
  type Measurement,
  mergeRounds,
  type RunResult,
  runResult,
  scaleResult,
  type Target,
  targetLabel,
} from "./bench_results.ts";
import { runScale } from "./bench_scale.ts";
import { runSweep, sweepRuns } from "./bench_sweep.ts";
import {
  freshServers,
  type Scenario,
  type ScenarioName,
  scenarioPolicies,
  SCENARIOS,
} from "./bench_scenarios.ts";

export {
  type RunResult,
  type ServerResult,
  type Target,
  targetLabel,
  type TimelinePoint,
} from "./bench_results.ts";

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
  /** `--quick`: the `scale` scenario runs its small size, and sweeps their quick loads. */
  quick?: boolean;
  /** Offered loads of the sweep scenarios in place of their own (shares of capacity). */
  loads?: number[];
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

/** Share of `durationS` that each lookup run (GetServer alone) lasts. */
const LOOKUP_SECONDS_SHARE = 0.5;

/** Runs the benchmark. One instance per run. */
export class BenchRunner {
  #options: BenchOptions;
  #env: BenchEnvironment;
  #onProgress: (p: BenchProgress) => void;
  #run = 0;
  #runs: number;

  /** Creates a runner; `onProgress` is called a few times per second. */
  constructor(options: BenchOptions, onProgress: (p: BenchProgress) => void = () => {}) {
    this.#options = options;
    this.#env = new BenchEnvironment(options);
    this.#onProgress = onProgress;
    const lookups = options.policies.length + 1;
    this.#runs = options.scenarios.reduce(
      (n, s) =>
        n + (SCENARIOS[s].fleet
          ? 1
          : SCENARIOS[s].sweep
          ? sweepRuns(SCENARIOS[s], this.#sweepOptions(SCENARIOS[s]))
          : this.#targets(s).length * this.#rounds(SCENARIOS[s])) +
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
      await this.#env.startEtcd();
      for (const name of this.#options.scenarios) {
        const scenario = SCENARIOS[name];
        if (scenario.fleet) {
          results.push(await this.#scale(scenario));
          continue;
        }
        if (scenario.sweep) {
          results.push(
            ...await runSweep(this.#env, scenario, {
              ...this.#sweepOptions(scenario),
              nextRun: () => this.#nextRun(),
            }),
          );
          continue;
        }
        results.push(...await this.#scenario(scenario));
        if (scenario.lookups) results.push(...await this.#lookups(scenario));
      }
      return results;
    } finally {
      await this.#env.stop();
    }
  }

  /** Stops every process started (Ctrl-C). */
  async abort(): Promise<void> {
    await this.#env.abort();
  }

  #sweepOptions(scenario: Scenario) {
    const o = this.#options;
    return {
      policies: scenarioPolicies(scenario, o.policies, o.quick ?? false),
      durationS: o.durationS,
      quick: o.quick ?? false,
      reportIntervalMs: o.reportIntervalMs,
      loads: o.loads,
    };
  }

  #targets(scenario: ScenarioName): Target[] {
    const o = this.#options;
    const policies = scenarioPolicies(SCENARIOS[scenario], o.policies, o.quick ?? false);
    const modes = o.modes.filter((mode) =>
      mode !== "watch" || o.watchScenarios === undefined || o.watchScenarios.includes(scenario)
    );
    const balancers = SCENARIOS[scenario].balancers;
    if (balancers !== undefined) {
      return policies.flatMap((policy): Target[] => [
        { policy, mode: "lookaside" },
        { policy, mode: "lookaside", balancers },
        { policy, mode: "lookaside", balancers, replicaUnaware: true },
      ]);
    }
    return [
      ...modes.flatMap((mode) => policies.map((policy): Target => ({ policy, mode }))),
      { policy: "direct", mode: "lookaside" },
    ];
  }

  /**
   * Churn and slow start change their servers, and replicas change the balancers: one run per
   * target, on fresh servers.
   */
  #rounds(scenario: Scenario): number {
    return freshServers(scenario) ? 1 : this.#options.rounds;
  }

  #concurrency(scenario: Scenario): number {
    return this.#options.concurrency ?? scenario.concurrency;
  }

  /** Counts one more run; returns what reports its progress to the bar. */
  #nextRun(): RunProgress {
    const run = ++this.#run;
    return (label, elapsedS, totalS, rate) =>
      this.#onProgress({ label, run, runs: this.#runs, elapsedS, totalS, rate });
  }

  /** Every target of a scenario with tasks, round after round. */
  async #scenario(scenario: Scenario): Promise<RunResult[]> {
    const isFresh = freshServers(scenario);
    const rounds = this.#rounds(scenario);
    const targets = this.#targets(scenario.name);
    const measured = new Map<Target, Measurement[]>(targets.map((t) => [t, []]));
    const backends = new Map<Target, Backend[]>();
    let shared: Deployment | undefined;
    try {
      for (let round = 1; round <= rounds; round++) {
        for (const target of targets) {
          const deployment = isFresh
            ? await this.#env.startDeployment(scenario, target)
            : shared ??= await this.#env.startDeployment(scenario);
          try {
            const roundLabel = rounds > 1 ? ` [${round}/${rounds}]` : "";
            measured.get(target)!.push(
              await measureTasks(this.#env, deployment, scenario, target, {
                label: `${scenario.name} / ${targetLabel(target)}${roundLabel}`,
                concurrency: this.#concurrency(scenario),
                durationS: this.#options.durationS / rounds,
                // The replicas scenario runs as many load clients through one balancer as
                // through several.
                clients: Math.max(this.#options.clients, scenario.balancers ?? 1),
                progress: this.#nextRun(),
              }),
            );
            backends.set(target, deployment.backends);
          } finally {
            if (isFresh) await this.#env.stopDeployment(deployment);
          }
        }
      }
      return targets.map((target) =>
        runResult(
          scenario,
          target,
          "tasks",
          this.#concurrency(scenario),
          mergeRounds(measured.get(target)!),
          backends.get(target)!,
        )
      );
    } finally {
      if (shared) await this.#env.stopDeployment(shared);
    }
  }

  /** `GetServer` alone for each policy (switched with SetPolicy) and for the echo server. */
  async #lookups(scenario: Scenario): Promise<RunResult[]> {
    const concurrency = this.#concurrency(scenario);
    const load = (policy: PolicyName | "echo") => ({
      label: `${scenario.name} / ${policy} lookups`,
      concurrency,
      durationS: Math.max(0.3, this.#options.durationS * LOOKUP_SECONDS_SHARE),
      clients: this.#options.clients,
      progress: this.#nextRun(),
    });
    const env = this.#env;
    const { server, port } = await env.startLookupBalancer(scenario.name);
    const address = `127.0.0.1:${port}`;
    const measured = await measureLookups(env, server, address, this.#options.policies, load);
    // The echo baseline takes the same port once the balancer has stopped.
    measured.push(...await measureLookups(env, env.startEcho(port), address, ["echo"], load));
    return measured.map(([target, m]) =>
      runResult(scenario, target, "lookups", concurrency, m, [])
    );
  }

  /** The `scale` scenario (lib/bench/bench_scale.ts): one result with its figures. */
  async #scale(scenario: Scenario): Promise<RunResult> {
    const progress = this.#nextRun();
    const startedAt = performance.now();
    const figures = await runScale({
      spawn: (...args) => this.#env.spawn(...args),
      spawnBalancer: (port, prefix, extra) => this.#env.spawnBalancer(port, prefix, extra),
      etcdEndpoint: this.#env.etcdEndpoint,
      prefix: this.#env.prefixes(scenario.name).servers,
      httpPort: this.#options.httpPort,
      policies: this.#options.policies,
      concurrency: this.#concurrency(scenario),
      size: this.#options.quick ? scenario.fleet!.quick : scenario.fleet!.full,
      progress: (what, fraction) => {
        const elapsedS = (performance.now() - startedAt) / 1_000;
        const totalS = Math.max(elapsedS, Math.round(elapsedS / Math.max(fraction, 0.05)));
        progress(`scale / ${what}`, elapsedS, totalS, 0);
      },
    });
    const durationS = (performance.now() - startedAt) / 1_000;
    return scaleResult(scenario, this.#concurrency(scenario), durationS, figures);
  }
}
