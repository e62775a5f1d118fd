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
] as const;
/** A scenario name. */
export type ScenarioName = typeof SCENARIO_NAMES[number];

/** One scenario. */
export interface Scenario {
  name: ScenarioName;
  /** One line for the report. */
  description: string;
  /** Slowdown of each backend (1 = normal). */
  slowdowns: number[];
  task: "simple" | "cpu_heavy";
  /** Tasks in flight from the load clients, unless `--concurrency` says otherwise. */
  concurrency: number;
  /** Kill the first backend at 1/3 of the run and start a new one at 2/3. */
  churn: boolean;
  /** Start one more backend at 1/3 of the run (its share should ramp over the slow start window). */
  joins: boolean;
  /** Also measure `GetServer` alone against the `echo` ceiling. */
  lookups: boolean;
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
};
