/**
 * `deno task demo`: starts a balancer and backends for each policy, runs a client load against
 * each, and prints a comparison table. The flags live in `lib/harness/demo_flags.ts`, the logic
 * in `lib/harness/demo_run.ts`.
 *
 * @module
 */
import { DEMO_USAGE, parseDemoFlags } from "./lib/harness/demo_flags.ts";
import { formatDemoTable, runDemo } from "./lib/harness/demo_run.ts";
import { runMain } from "./lib/runtime/flags.ts";
import { setupLogging } from "./lib/runtime/log.ts";

async function main(): Promise<void> {
  const config = parseDemoFlags(Deno.args);
  if (config === "help") return console.log(DEMO_USAGE);
  const options = config.demo;
  await setupLogging(config.log.level, config.log.format);
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
