/**
 * The demo's flags: their table (types, help, defaults, shown by `--help` and read by
 * {@linkcode parseDemoFlags}), and their parsing into a checked {@linkcode DemoConfig}.
 * Every flag may also be set with its `LB_*` variable (`lib/runtime/flags.ts`).
 *
 * @module
 */
import { POLICY_NAMES, type PolicyName } from "../../policies/mod.ts";
import type { DemoOptions } from "./demo_run.ts";
import {
  choiceFlag,
  etcdFlag,
  FlagReader,
  type FlagSpecs,
  HELP_FLAG,
  parseFlags,
  usage,
  UsageError,
} from "../runtime/flags.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogConfig, logFlags } from "../runtime/log.ts";

const PROGRAM = "demo";

/** The demo's flags. */
export const DEMO_FLAGS = {
  policies: {
    type: "string",
    arg: "LIST",
    help: `comma-separated, from ${POLICY_NAMES.join(", ")} (default all)`,
  },
  duration: { type: "string", arg: "S", help: "seconds of load per policy", default: 8 },
  concurrency: { type: "string", arg: "C", help: "tasks in flight", default: 6 },
  task: { type: "string", arg: "TYPE", help: "simple | cpu_heavy", default: "cpu_heavy" },
  backends: { type: "string", arg: "N", help: "number of backends", default: 3 },
  slowdown: {
    type: "string",
    arg: "F",
    help: "the last backend's slowdown; 1 makes them equal",
    default: 3,
  },
  discovery: {
    type: "string",
    arg: "KIND",
    help: "builtin | etcd (default: etcd when --etcd is given, else builtin); etcd starts a " +
      "throwaway etcd from the PATH unless --etcd is given",
  },
  etcd: { type: "string", arg: "URL", help: "an etcd to use for --discovery etcd" },
  "http-port": {
    type: "string",
    arg: "PORT",
    help: "port of the balancer's dashboard on 127.0.0.1 (default: any free port)",
  },
  ...logFlags("warning"),
  ...HELP_FLAG,
} as const satisfies FlagSpecs;

/** The demo's `--help`. */
export const DEMO_USAGE = usage({
  command: "deno task demo [flags]",
  about: "Starts a balancer and backends (the last one slower), runs a client load against each " +
    "policy in turn, and prints one comparison table.",
  examples: [
    "deno task demo",
    "deno task demo --policies round_robin,least_load --duration 5",
    "LB_DISCOVERY=etcd deno task demo",
  ],
}, DEMO_FLAGS);

/** What the flags set of a demo: the options of `runDemo()`, but its callback. */
export type DemoSettings = Omit<DemoOptions, "onDashboard">;

/** The demo's flags, checked. */
export interface DemoConfig {
  demo: DemoSettings;
  log: LogConfig;
}

/**
 * Parses and checks the demo's command line (and `LB_*` variables): `"help"` for `--help`, else
 * its config. A bad flag throws a {@linkcode UsageError} naming it.
 */
export function parseDemoFlags(args: string[]): DemoConfig | "help" {
  const flags = parseFlags(PROGRAM, args, DEMO_FLAGS);
  if (flags.help) return "help";
  const read = new FlagReader(PROGRAM, DEMO_FLAGS, flags);
  const policies = (flags.policies ?? POLICY_NAMES.join(",")).split(",").map((p) =>
    choiceFlag(PROGRAM, "policies", p.trim(), undefined, POLICY_NAMES)
  ) as PolicyName[];
  if (policies.length === 0) {
    throw new UsageError(`Cannot start ${PROGRAM} as '--policies' is empty`);
  }
  return {
    demo: {
      policies,
      durationS: read.number("duration", 1, 3_600),
      concurrency: read.int("concurrency", 1, 1_000),
      task: read.choice("task", ["simple", "cpu_heavy"]),
      backends: read.int("backends", 1, 20),
      slowdown: read.number("slowdown", 0.1, 100),
      discovery: read.choice("discovery", ["builtin", "etcd"]) ??
        (flags.etcd ? "etcd" : "builtin"),
      etcd: etcdFlag(PROGRAM, flags.etcd)?.join(","),
      httpPort: read.int("http-port", 0, 65535),
    },
    log: {
      level: read.choice("log-level", LOG_LEVELS),
      format: read.choice("log-format", LOG_FORMATS),
    },
  };
}
