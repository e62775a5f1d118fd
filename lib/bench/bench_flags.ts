/**
 * The benchmark's flags: their table (types, help, defaults, shown by `--help` and read by
 * {@linkcode parseBenchFlags}), and their parsing into a checked {@linkcode BenchConfig}.
 * Every flag may also be set with its `LB_*` variable (`lib/runtime/flags.ts`).
 *
 * @module
 */
import { POLICY_NAMES } from "../../policies/mod.ts";
import {
  DEFAULT_SCENARIOS,
  QUICK_FRESH_POLICIES,
  QUICK_SCENARIOS,
  SCENARIO_NAMES,
  type ScenarioName,
  SWEEP_LOADS,
} from "./bench_scenarios.ts";
import { DEFAULT_WORK_UNITS } from "../backend/cpu_work.ts";
import { DEFAULT_REPORT_INTERVAL_MS } from "../backend/load_reporter.ts";
import { CLIENT_MODES } from "../client/task_client.ts";
import type { BenchOptions } from "./bench_runner.ts";
import {
  choiceFlag,
  FlagReader,
  type FlagSpecs,
  HELP_FLAG,
  parseFlags,
  usage,
  UsageError,
} from "../runtime/flags.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogConfig, logFlags } from "../runtime/log.ts";

const PROGRAM = "bench";

/** Seconds per scenario and target of `bench --quick`. */
export const QUICK_DURATION_S = 0.3;
/** With `bench --quick` (and no `--modes`), only these scenarios run the watch mode too. */
export const QUICK_WATCH_SCENARIOS: ScenarioName[] = ["simple"];

/** The benchmark's flags. */
export const BENCH_FLAGS = {
  scenarios: {
    type: "string",
    arg: "LIST",
    help: `comma-separated, from ${
      SCENARIO_NAMES.join(", ")
    } (default all but scale and replicas; --quick: not original_three and uniform either)`,
  },
  policies: {
    type: "string",
    arg: "LIST",
    help: `comma-separated, from ${POLICY_NAMES.join(", ")} (default all)`,
  },
  modes: {
    type: "string",
    arg: "LIST",
    help: `client modes to run each policy in: ${CLIENT_MODES.join(", ")} (default both)`,
  },
  duration: {
    type: "string",
    arg: "S",
    help: "seconds of load per scenario and target",
    default: 20,
  },
  rounds: {
    type: "string",
    arg: "N",
    help: "split each target's duration into N runs, interleaved with the other targets', " +
      "where the servers are shared (--quick: 1)",
    default: 3,
  },
  concurrency: {
    type: "string",
    arg: "C",
    help: "tasks in flight (default: each scenario's own)",
  },
  loads: {
    type: "string",
    arg: "LIST",
    help: "offered loads of the sweep scenarios, comma-separated shares of the pool's capacity " +
      `above 0 and below 2 (default ${SWEEP_LOADS.join(",")}; --quick: 0.7)`,
  },
  clients: {
    type: "string",
    arg: "N",
    help: "load client processes sharing the concurrency",
    default: 1,
  },
  "work-units": {
    type: "string",
    arg: "N",
    help: "size of a CPU-heavy task",
    default: DEFAULT_WORK_UNITS,
  },
  "report-interval-ms": {
    type: "string",
    arg: "MS",
    help: "backends' load report period",
    default: DEFAULT_REPORT_INTERVAL_MS,
  },
  quick: {
    type: "boolean",
    help: `every scenario and policy, ${QUICK_DURATION_S} s each (watch mode in ` +
      `${QUICK_WATCH_SCENARIOS.join(", ")} only; where each target gets fresh servers, ` +
      `${QUICK_FRESH_POLICIES.join(", ")} only): checks that it all works`,
  },
  out: {
    type: "string",
    arg: "DIR",
    help: "output folder (default bench-results/<timestamp>); the task may write only under " +
      "bench-results/ and docs/bench/",
  },
  render: {
    type: "string",
    arg: "DIR",
    help: "write report.md and the charts again from DIR/results.json, and exit",
  },
  "http-port": {
    type: "string",
    arg: "PORT",
    help: "serve each scenario's balancer dashboard on this port of 127.0.0.1 while it runs",
  },
  ...logFlags("warning"),
  ...HELP_FLAG,
} as const satisfies FlagSpecs;

/** The benchmark's `--help`. */
export const BENCH_USAGE = usage({
  command: "deno task bench [flags]",
  about: "The end-to-end benchmark: starts its own etcd, balancers, backends and load clients as " +
    "processes, runs every scenario for every policy and baseline, and writes results.json, " +
    "report.md and SVG charts.",
  examples: [
    "deno task bench --quick",
    "deno task bench --scenarios heterogeneous --policies round_robin,least_load --duration 10",
    "deno task bench --render docs/bench",
  ],
}, BENCH_FLAGS);

/** What the flags set of a benchmark run: the options of `new BenchRunner()`, but `etcdDir`. */
export type BenchSettings = Omit<BenchOptions, "etcdDir">;

/** The benchmark's flags, checked: write the report of a past run again, or run. */
export type BenchConfig =
  | { kind: "render"; dir: string }
  | { kind: "run"; startedAt: Date; out: string; run: BenchSettings; log: LogConfig };

/**
 * Parses and checks the benchmark's command line (and `LB_*` variables): `"help"` for `--help`,
 * else its config; a run started at `startedAt` writes under `bench-results/<its time>` unless
 * `--out` says otherwise. A bad flag throws a {@linkcode UsageError} naming it. With `--render`,
 * the other flags are not read.
 */
export function parseBenchFlags(args: string[], startedAt = new Date()): BenchConfig | "help" {
  const flags = parseFlags(PROGRAM, args, BENCH_FLAGS);
  if (flags.help) return "help";
  if (flags.render !== undefined) return { kind: "render", dir: flags.render };
  const read = new FlagReader(PROGRAM, BENCH_FLAGS, flags);
  const quick = read.boolean("quick");
  if (quick && flags.duration !== undefined) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--quick' and '--duration' exclude each other`,
    );
  }
  const out = flags.out ?? `bench-results/${startedAt.toISOString().replace(/[:.]/g, "-")}`;
  if (Deno.permissions.querySync({ name: "write", path: out }).state !== "granted") {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--out' must be a folder it may write: the bench task may write under bench-results/ and docs/bench/ only: current value is '${out}'`,
    );
  }
  const run: BenchSettings = {
    scenarios: flags.scenarios === undefined
      ? quick ? QUICK_SCENARIOS : DEFAULT_SCENARIOS
      : listFlag("scenarios", flags.scenarios, SCENARIO_NAMES),
    policies: listFlag("policies", flags.policies, POLICY_NAMES),
    modes: listFlag("modes", flags.modes, CLIENT_MODES),
    watchScenarios: quick && flags.modes === undefined ? QUICK_WATCH_SCENARIOS : undefined,
    durationS: quick ? QUICK_DURATION_S : read.number("duration", 0.3, 3_600),
    concurrency: read.int("concurrency", 1, 10_000),
    clients: read.int("clients", 1, 64),
    rounds: quick ? 1 : read.int("rounds", 1, 100),
    workUnits: read.number("work-units", 0.01, 10_000),
    reportIntervalMs: read.int("report-interval-ms", 50, 60_000),
    quick,
    loads: loadsFlag(flags.loads),
    httpPort: read.int("http-port", 1, 65535),
  };
  const log = {
    level: read.choice("log-level", LOG_LEVELS),
    format: read.choice("log-format", LOG_FORMATS),
  };
  return { kind: "run", startedAt, out, run, log };
}

/** Reads a comma-separated list of `all`'s names; every one when absent. */
function listFlag<C extends string>(flag: string, value: string | undefined, all: readonly C[]) {
  if (value === undefined) return [...all];
  const items = value.split(",").map((v) => v.trim()).filter((v) => v !== "");
  if (items.length === 0) throw new UsageError(`Cannot start ${PROGRAM} as '--${flag}' is empty`);
  return items.map((item) => choiceFlag(PROGRAM, flag, item, all[0], all));
}

/** Reads `--loads`: shares of capacity above 0 and below 2; the scenarios' own when absent. */
function loadsFlag(value: string | undefined): number[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(",").map((v) => v.trim());
  const loads = items.map(Number);
  const bad = items.find((item, i) => item === "" || !(loads[i] > 0 && loads[i] < 2));
  if (bad !== undefined) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--loads' must be comma-separated shares of capacity above 0 and below 2, e.g. 0.5,0.7: current value is '${value}'`,
    );
  }
  return loads;
}
