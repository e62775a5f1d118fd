/**
 * The benchmark's named scenarios: what runs, on which backends, under what load.
 *
 * @module
 */

/** Names accepted by `bench --scenarios`. */
export const SCENARIO_NAMES = [
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
}

/** Every scenario, by name. */
export const SCENARIOS: Record<ScenarioName, Scenario> = {
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
