/**
 * `deno task demo`: starts a balancer and backends for each policy, runs a client load against
 * each, and prints a comparison table. Logic lives in `lib/demo.ts`.
 *
 * @module
 */
import { POLICY_NAMES } from "./policies/mod.ts";
import { formatDemoTable, runDemo } from "./lib/demo.ts";
import {
  choiceFlag,
  etcdFlag,
  intFlag,
  numberFlag,
  parseFlags,
  runMain,
  UsageError,
} from "./lib/flags.ts";
import { setupLogging } from "./lib/log.ts";
import type { PolicyName } from "./policies/mod.ts";

const PROGRAM = "demo";
const USAGE = `Usage: deno task demo [flags]

  --policies LIST      comma-separated, from ${POLICY_NAMES.join(", ")} (default all)
  --duration S         seconds of load per policy (default 8)
  --concurrency C      tasks in flight (default 6)
  --task TYPE          simple | cpu_heavy (default cpu_heavy)
  --backends N         number of backends (default 3)
  --slowdown F         the last backend's slowdown; 1 makes them equal (default 3)
  --discovery KIND     builtin | etcd (default builtin); etcd starts a throwaway etcd from the
                       PATH unless --etcd is given
  --etcd URL           an etcd to use for --discovery etcd
  --help               show this text`;

async function main(): Promise<void> {
  const flags = parseFlags(PROGRAM, Deno.args, {
    policies: { type: "string" },
    duration: { type: "string" },
    concurrency: { type: "string" },
    task: { type: "string" },
    backends: { type: "string" },
    slowdown: { type: "string" },
    discovery: { type: "string" },
    etcd: { type: "string" },
    help: { type: "boolean" },
  });
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
  };
  await setupLogging("warning");
  console.log(
    `Demo: ${options.backends} backends${
      options.slowdown !== 1 ? ` (the last one ${options.slowdown}x slower)` : ""
    }, ${options.task} tasks, ${options.concurrency} in flight, ${options.durationS} s per policy, ${options.discovery} discovery\n`,
  );
  const results = await runDemo(options);
  console.log(`\n${formatDemoTable(results, options.slowdown)}`);
}

if (import.meta.main) await runMain(main);
