/**
 * `deno task bench`: the end-to-end benchmark. Starts its own etcd, balancers, backends and load
 * clients as processes, runs every scenario for every policy and baseline, and writes
 * results.json, report.md and SVG charts. Logic lives in `lib/bench_*.ts`.
 *
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { POLICY_NAMES, type PolicyName } from "./policies/mod.ts";
import { BenchRunner } from "./lib/bench/bench_runner.ts";
import { describeMachine, writeReport } from "./lib/bench/bench_report.ts";
import {
  DEFAULT_SCENARIOS,
  SCENARIO_NAMES,
  type ScenarioName,
} from "./lib/bench/bench_scenarios.ts";
import { BENCH_FLAGS, QUICK_DURATION_S, QUICK_WATCH_SCENARIOS } from "./lib/ops/entry_flags.ts";
import { DEFAULT_WORK_UNITS } from "./lib/backend/cpu_work.ts";
import {
  choiceFlag,
  intFlag,
  numberFlag,
  parseFlags,
  runMain,
  usage,
  UsageError,
} from "./lib/ops/flags.ts";
import { DEFAULT_REPORT_INTERVAL_MS } from "./lib/backend/load_reporter.ts";
import { LOG_FORMATS, LOG_LEVELS, setupLogging } from "./lib/ops/log.ts";
import { ProgressBar } from "./lib/ops/progress.ts";
import { CLIENT_MODES, type ClientMode } from "./lib/client/task_client.ts";

const PROGRAM = "bench";
const USAGE = usage({
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

function listFlag<C extends string>(flag: string, value: string | undefined, all: readonly C[]) {
  if (value === undefined) return [...all];
  const items = value.split(",").map((v) => v.trim()).filter((v) => v !== "");
  if (items.length === 0) throw new UsageError(`Cannot start ${PROGRAM} as '--${flag}' is empty`);
  return items.map((item) => choiceFlag(PROGRAM, flag, item, all[0], all));
}

async function main(): Promise<void> {
  const flags = parseFlags(PROGRAM, Deno.args, BENCH_FLAGS);
  if (flags.help) return console.log(USAGE);
  if (flags.render !== undefined) {
    const results = JSON.parse(await Deno.readTextFile(`${flags.render}/results.json`));
    const files = await writeReport(flags.render, results);
    return console.log(`Wrote ${files.map((f) => `${flags.render}/${f}`).join(", ")}`);
  }
  if (flags.quick && flags.duration !== undefined) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--quick' and '--duration' exclude each other`,
    );
  }
  const startedAt = new Date();
  const out = flags.out ?? `bench-results/${startedAt.toISOString().replace(/[:.]/g, "-")}`;
  if (Deno.permissions.querySync({ name: "write", path: out }).state !== "granted") {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--out' must be a folder it may write: the bench task may write under bench-results/ and docs/bench/ only: current value is '${out}'`,
    );
  }
  const options = {
    scenarios: flags.scenarios === undefined
      ? DEFAULT_SCENARIOS
      : listFlag("scenarios", flags.scenarios, SCENARIO_NAMES) as ScenarioName[],
    policies: listFlag("policies", flags.policies, POLICY_NAMES) as PolicyName[],
    modes: listFlag("modes", flags.modes, CLIENT_MODES) as ClientMode[],
    watchScenarios: flags.quick && flags.modes === undefined ? QUICK_WATCH_SCENARIOS : undefined,
    durationS: flags.quick
      ? QUICK_DURATION_S
      : numberFlag(PROGRAM, "duration", flags.duration, 20, 0.3, 3_600),
    concurrency: flags.concurrency === undefined
      ? undefined
      : intFlag(PROGRAM, "concurrency", flags.concurrency, 1, 1, 10_000),
    clients: intFlag(PROGRAM, "clients", flags.clients, 1, 1, 64),
    rounds: flags.quick ? 1 : intFlag(PROGRAM, "rounds", flags.rounds, 3, 1, 100),
    workUnits: numberFlag(
      PROGRAM,
      "work-units",
      flags["work-units"],
      DEFAULT_WORK_UNITS,
      0.01,
      10_000,
    ),
    reportIntervalMs: intFlag(
      PROGRAM,
      "report-interval-ms",
      flags["report-interval-ms"],
      DEFAULT_REPORT_INTERVAL_MS,
      50,
      60_000,
    ),
    etcdDir: ".bench-etcd",
    quick: flags.quick === true,
    httpPort: flags["http-port"] === undefined
      ? undefined
      : intFlag(PROGRAM, "http-port", flags["http-port"], 0, 1, 65535),
  };
  await setupLogging(
    choiceFlag(PROGRAM, "log-level", flags["log-level"], "warning", LOG_LEVELS) as LogLevel,
    choiceFlag(PROGRAM, "log-format", flags["log-format"], "text", LOG_FORMATS),
  );

  if (options.httpPort !== undefined) {
    console.error(`Dashboard: http://127.0.0.1:${options.httpPort}/ (live while a scenario runs)`);
  }
  const bar = new ProgressBar({ plainEveryMs: 2_000 });
  let shownRun = 0;
  const runner = new BenchRunner(options, (p) => {
    if (p.run !== shownRun) bar.done(); // one line per run
    shownRun = p.run;
    bar.update(
      `[${p.run}/${p.runs}] ${p.label}`.padEnd(44),
      p.elapsedS / p.totalS,
      `${p.elapsedS.toFixed(1)}/${p.totalS} s  ${p.rate.toFixed(1)}/s`,
    );
  });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    console.error("\nStopping: tearing down every process...");
    runner.abort().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);

  console.error(`Benchmark: ${runner.runs} runs of ${options.durationS} s, writing to ${out}/`);
  const t0 = performance.now();
  const runs = await runner.run().catch((error) => {
    // Interrupted: the runs fail as their processes go; the signal handler exits with 130.
    if (stopping) return new Promise<never>(() => {});
    throw error;
  }).finally(() => bar.done());
  const files = await writeReport(out, {
    startedAt: startedAt.toISOString(),
    totalS: (performance.now() - t0) / 1_000,
    command: `deno task bench ${Deno.args.join(" ")}`.trim(),
    flags: { ...options },
    ...describeMachine(),
    runs,
  });
  console.log(`Wrote ${files.map((f) => `${out}/${f}`).join(", ")}`);
}

if (import.meta.main) await runMain(main);
