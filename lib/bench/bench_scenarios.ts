/**
 * The benchmark's named scenarios: what runs, on which backends, under what load.
 *
 * @module
 */

import type { PolicyName } from "../../policies/mod.ts";

/** Names accepted by `bench --scenarios`. */
export const SCENARIO_NAMES = [
  "capacity_mix",
  "original_three",
  "noisy_neighbour",
  "uniform",
  "watch_herd",
  "homogeneous",
  "heterogeneous",
  "simple",
  "churn",
  "slow_start",
  "scale",
  "replicas",
] as const;
/** A scenario name. */
export type ScenarioName = typeof SCENARIO_NAMES[number];

/**
 * Scenarios run when `--scenarios` is not given: all but `scale`, which measures the control
 * plane at 1,000 servers rather than the policies under load, and `replicas`, which compares
 * one balancer with several; each runs on its own.
 */
export const DEFAULT_SCENARIOS: ScenarioName[] = SCENARIO_NAMES.filter((s) =>
  s !== "scale" && s !== "replicas"
);

/**
 * What `bench --quick` runs when `--scenarios` is not given: the default list but `original_three`
 * and `uniform`, sweeps that differ from `capacity_mix` by their pool only.
 */
export const QUICK_SCENARIOS: ScenarioName[] = DEFAULT_SCENARIOS.filter((s) =>
  s !== "original_three" && s !== "uniform"
);

/** Size of the `scale` scenario. */
export interface FleetSize {
  /** Servers registered, spread over the fleet processes. */
  backends: number;
  /** Fleet processes (`lib/bench/fleet.ts`) serving them. */
  processes: number;
  /** Registrations and deregistrations of one more server, each timed to the balancer. */
  repeats: number;
  /** Time between two of those steps. */
  intervalMs: number;
}

/**
 * A load sweep on emulated backends (`backend --service-time`): each policy at each offered load,
 * open loop, with the simulator's figures for the same pool and the oracle's beside the real ones.
 */
export interface Sweep {
  /** Capacity factor of each backend (`--capacity`); their sum is the pool's capacity. */
  capacities: number[];
  /**
   * Capacity over the run for some backends, by index: times as shares of the run, e.g. one at 0.3
   * from 1/3 to 2/3 of it (a noisy neighbour).
   */
  schedules?: Record<number, { fromShare: number; toShare: number; capacity: number }>;
  /** Service time at capacity 1 (`--service-time`); one worker slot per backend. */
  serviceTime: string;
  /** Offered loads swept, as shares of the pool's capacity. */
  loads: number[];
  /** The loads `--quick` runs. */
  quickLoads: number[];
  /** Client mode of every run. */
  mode: "lookaside" | "watch";
  /** Load client processes, each its own client (in watch mode, its own picker). */
  clients: number;
}

/** Offered loads of a sweep, as shares of the pool's capacity. */
export const SWEEP_LOADS = [0.5, 0.7, 0.85, 0.95];
/** Service time of the sweeps' emulated tasks at capacity 1. */
export const SWEEP_SERVICE_TIME = "lognormal:20ms:0.5";
/** What `--quick` runs of a sweep. */
const QUICK_LOADS = [0.7];

/** One scenario. */
export interface Scenario {
  name: ScenarioName;
  /** One line for the report. */
  description: string;
  /** Slowdown of each backend (1 = normal). */
  slowdowns: number[];
  task: "simple" | "cpu_heavy";
  /**
   * Tasks in flight from the load clients, unless `--concurrency` says otherwise (`scale`: the
   * `GetServer` calls in flight while it measures the pick cost).
   */
  concurrency: number;
  /** Kill the first backend at 1/3 of the run and start a new one at 2/3. */
  churn: boolean;
  /** Start one more backend at 1/3 of the run (its share should ramp over the slow start window). */
  joins: boolean;
  /** Also measure `GetServer` alone against the `echo` ceiling. */
  lookups: boolean;
  /**
   * Balancer replicas on the same etcd: each policy runs through one balancer, through this many
   * (the load clients split between them), and through this many with `--replica-unaware`, on
   * fresh servers each time.
   */
  balancers?: number;
  /** A scale run instead of a load run: this many servers from fleet processes (and `--quick`'s). */
  fleet?: { full: FleetSize; quick: FleetSize };
  /** A load sweep on emulated backends instead of one load on CPU-heavy ones. */
  sweep?: Sweep;
}

/** A sweep scenario on backends of `capacities`, in `mode` from `clients` load clients. */
function sweepScenario(
  name: ScenarioName,
  description: string,
  sweep: Omit<Sweep, "serviceTime" | "loads" | "quickLoads">,
): Scenario {
  return {
    name,
    description,
    slowdowns: sweep.capacities.map(() => 1),
    task: "cpu_heavy",
    concurrency: 2_000,
    churn: false,
    joins: false,
    lookups: false,
    sweep: {
      ...sweep,
      serviceTime: SWEEP_SERVICE_TIME,
      loads: SWEEP_LOADS,
      quickLoads: QUICK_LOADS,
    },
  };
}

/** Every scenario, by name. */
export const SCENARIOS: Record<ScenarioName, Scenario> = {
  capacity_mix: sweepScenario(
    "capacity_mix",
    "8 emulated backends of capacities 1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25",
    { capacities: [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25], mode: "lookaside", clients: 1 },
  ),
  original_three: sweepScenario(
    "original_three",
    "3 emulated backends, as many as the original system runs, the third at capacity 0.25",
    { capacities: [1, 1, 0.25], mode: "lookaside", clients: 1 },
  ),
  noisy_neighbour: sweepScenario(
    "noisy_neighbour",
    "4 emulated backends of capacity 1; the first drops to 0.3 for the middle third of each run " +
      "(a noisy neighbour), the offered load being a share of the full pool",
    {
      capacities: [1, 1, 1, 1],
      schedules: { 0: { fromShare: 1 / 3, toShare: 2 / 3, capacity: 0.3 } },
      mode: "lookaside",
      clients: 1,
    },
  ),
  uniform: sweepScenario(
    "uniform",
    "4 equal emulated backends",
    { capacities: [1, 1, 1, 1], mode: "lookaside", clients: 1 },
  ),
  watch_herd: sweepScenario(
    "watch_herd",
    "4 equal emulated backends and 20 load clients in watch mode, each picking on its own from " +
      "the same pushed loads (where herding shows)",
    { capacities: [1, 1, 1, 1], mode: "watch", clients: 20 },
  ),
  homogeneous: {
    name: "homogeneous",
    description: "3 equal backends, CPU-heavy tasks",
    slowdowns: [1, 1, 1],
    task: "cpu_heavy",
    concurrency: 6,
    churn: false,
    joins: false,
    lookups: false,
  },
  heterogeneous: {
    name: "heterogeneous",
    description: "3 backends, the third 4 times slower, CPU-heavy tasks",
    slowdowns: [1, 1, 4],
    task: "cpu_heavy",
    concurrency: 6,
    churn: false,
    joins: false,
    lookups: false,
  },
  simple: {
    name: "simple",
    description: "3 equal backends, SIMPLE tasks as fast as the client can send them",
    slowdowns: [1, 1, 1],
    task: "simple",
    concurrency: 32,
    churn: false,
    joins: false,
    lookups: true,
  },
  churn: {
    name: "churn",
    description:
      "3 equal backends, CPU-heavy tasks; the first is killed (SIGKILL) at 1/3 of the run and a new one starts at 2/3",
    slowdowns: [1, 1, 1],
    task: "cpu_heavy",
    concurrency: 6,
    churn: true,
    joins: false,
    lookups: false,
  },
  slow_start: {
    name: "slow_start",
    description:
      "3 equal backends, CPU-heavy tasks; a fourth starts at 1/3 of the run and should ramp up over the slow start window (10 s) without a latency spike",
    slowdowns: [1, 1, 1],
    task: "cpu_heavy",
    concurrency: 6,
    churn: false,
    joins: true,
    lookups: false,
  },
  scale: {
    name: "scale",
    description:
      "1,000 registered servers from 4 fleet processes (lib/bench/fleet.ts), one balancer on " +
      "etcd health-checking them all; one more server registered and deregistered 20 times. " +
      "The balancer runs with the V8 flag `deno task balancer` has (`--max-semi-space-size=8`)",
    slowdowns: [],
    task: "simple",
    concurrency: 8,
    churn: false,
    joins: false,
    lookups: false,
    fleet: {
      full: { backends: 1_000, processes: 4, repeats: 20, intervalMs: 1_500 },
      quick: { backends: 40, processes: 2, repeats: 3, intervalMs: 300 },
    },
  },
  replicas: {
    name: "replicas",
    description: "3 equal backends, CPU-heavy tasks, reporting their load to every balancer on " +
      "etcd once a second; each policy through one balancer, then through four on the same etcd " +
      "with the load clients split between them (do the replicas herd traffic?), then through " +
      "four that count each own pick once (`--replica-unaware`: the trap). The backends are " +
      "equal, so a lasting queue at one of them is the balancers' doing; about 10 tasks queue " +
      "at each and about 50 picks a second are made, so many fall between two reports",
    slowdowns: [1, 1, 1],
    task: "cpu_heavy",
    concurrency: 32,
    churn: false,
    joins: false,
    lookups: false,
    balancers: 4,
  },
};

/**
 * The policies `bench --quick` runs in a scenario that starts fresh servers for each target: the
 * baseline, the weights, the probes. Each such target costs a deployment (seconds), and every
 * policy's pick path already runs in the scenarios whose servers are shared.
 */
export const QUICK_FRESH_POLICIES: readonly PolicyName[] = [
  "round_robin",
  "weighted_round_robin",
  "prequal",
];

/**
 * Whether each target of `scenario` runs on servers (and balancers) of its own: churn and slow
 * start change their servers, a capacity schedule runs from its deployment's start, and replicas
 * change the balancers.
 */
export function freshServers(scenario: Scenario): boolean {
  return scenario.churn || scenario.joins || scenario.balancers !== undefined ||
    scenario.sweep?.schedules !== undefined;
}

/** The policies of `policies` that run in `scenario` (with `--quick`, fewer where servers are fresh). */
export function scenarioPolicies(
  scenario: Scenario,
  policies: readonly PolicyName[],
  quick: boolean,
): PolicyName[] {
  if (!quick || !freshServers(scenario)) return [...policies];
  const few = policies.filter((p) => QUICK_FRESH_POLICIES.includes(p));
  return few.length > 0 ? few : [...policies];
}
