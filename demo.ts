/**
 * `deno task demo`: starts a balancer and backends for each policy, runs a client load against
 * each, and prints a comparison table. Logic lives in `lib/harness/demo_run.ts`.
 *
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { POLICY_NAMES } from "./policies/mod.ts";
import { DEMO_FLAGS } from "./lib/ops/entry_flags.ts";
import { formatDemoTable, runDemo } from "./lib/harness/demo_run.ts";
import {
  choiceFlag,
  etcdFlag,
  intFlag,
  numberFlag,
  parseFlags,
  runMain,
  usage,
  UsageError,
} from "./lib/ops/flags.ts";
import { LOG_FORMATS, LOG_LEVELS, setupLogging } from "./lib/ops/log.ts";
import type { PolicyName } from "./policies/mod.ts";

const PROGRAM = "demo";
const USAGE = usage({
  command: "deno task demo [flags]",
  about: "Starts a balancer and backends (the last one slower), runs a client load against each " +
    "policy in turn, and prints one comparison table.",
  examples: [
    "deno task demo",
    "deno task demo --policies round_robin,least_load --duration 5",
    "LB_DISCOVERY=etcd deno task demo",
  ],
}, DEMO_FLAGS);

async function main(): Promise<void> {
  const flags = parseFlags(PROGRAM, Deno.args, DEMO_FLAGS);
  if (flags.help) return console.log(USAGE);
  const policies = (flags.policies ?? POLICY_NAMES.join(",")).split(",").map((p) =>
    choiceFlag(PROGRAM, "policies", p.trim(), "round_robin", POLICY_NAMES)
  ) as PolicyName[];
  if (policies.length === 0) {
    throw new UsageError(`Cannot start ${PROGRAM} as '--policies' is empty`);
  }
  const options = {
    policies,
    durationS: numberFlag(PROGRAM, "duration", flags.duration, 8, 1, 3_600),
    concurrency: intFlag(PROGRAM, "concurrency", flags.concurrency, 6, 1, 1_000),
    task: choiceFlag(PROGRAM, "task", flags.task, "cpu_heavy", ["simple", "cpu_heavy"]),
    backends: intFlag(PROGRAM, "backends", flags.backends, 3, 1, 20),
    slowdown: numberFlag(PROGRAM, "slowdown", flags.slowdown, 3, 0.1, 100),
    discovery: choiceFlag(
      PROGRAM,
      "discovery",
      flags.discovery,
      flags.etcd ? "etcd" : "builtin",
      ["builtin", "etcd"],
    ),
    etcd: etcdFlag(PROGRAM, flags.etcd)?.join(","),
    httpPort: intFlag(PROGRAM, "http-port", flags["http-port"], 0, 0, 65535),
  };
  await setupLogging(
    choiceFlag(PROGRAM, "log-level", flags["log-level"], "warning", LOG_LEVELS) as LogLevel,
    choiceFlag(PROGRAM, "log-format", flags["log-format"], "text", LOG_FORMATS),
  );
  console.log(
    `Demo: ${options.backends} backends${
      options.slowdown !== 1 ? ` (the last one ${options.slowdown}x slower)` : ""
    }, ${options.task} tasks, ${options.concurrency} in flight, ${options.durationS} s per policy, ${options.discovery} discovery\n`,
  );
  const results = await runDemo({
    ...options,
    onDashboard: (url) => console.log(`Dashboard (live while the demo runs): ${url}\n`),
  });
  console.log(`\n${formatDemoTable(results, options.slowdown)}`);
}

if (import.meta.main) await runMain(main);
