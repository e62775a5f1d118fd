/**
 * `deno task bench`: the end-to-end benchmark. Starts its own etcd, balancers, backends and load
 * clients as processes, runs every scenario for every policy and baseline, and writes
 * results.json, report.md and SVG charts. The flags live in `lib/bench/bench_flags.ts`, the logic
 * in `lib/bench/`.
 *
 * @module
 */
import { BenchRunner } from "./lib/bench/bench_runner.ts";
import { describeMachine, writeReport } from "./lib/bench/bench_report.ts";
import { BENCH_USAGE, parseBenchFlags } from "./lib/bench/bench_flags.ts";
import { runMain } from "./lib/runtime/flags.ts";
import { setupLogging } from "./lib/runtime/log.ts";
import { ProgressBar } from "./lib/runtime/progress.ts";

async function main(): Promise<void> {
  const config = parseBenchFlags(Deno.args);
  if (config === "help") return console.log(BENCH_USAGE);
  if (config.kind === "render") {
    const { dir } = config;
    const results = JSON.parse(await Deno.readTextFile(`${dir}/results.json`));
    const files = await writeReport(dir, results);
    return console.log(`Wrote ${files.map((f) => `${dir}/${f}`).join(", ")}`);
  }
  const { startedAt, out } = config;
  const options = { ...config.run, etcdDir: ".bench-etcd" };
  await setupLogging(config.log.level, config.log.format);

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
