/**
 * The client: `deno task client --balancer 127.0.0.1:50051 --task cpu_heavy --requests 100`.
 *
 * Asks the balancer for a server, sends the task there, and prints a summary (`--json` for one
 * JSON object on stdout). The flags live in `lib/client/client_flags.ts`, the logic in
 * `lib/client/client_process.ts`.
 *
 * @module
 */
import { CLIENT_USAGE, parseClientFlags } from "./lib/client/client_flags.ts";
import { runClient } from "./lib/client/client_process.ts";
import { runMain } from "./lib/runtime/flags.ts";
import { setupLogging } from "./lib/runtime/log.ts";

async function main(): Promise<void> {
  const config = parseClientFlags(Deno.args);
  if (config === "help") return console.log(CLIENT_USAGE);
  // Before the balancers are looked up in etcd, so that why etcd did not answer is logged.
  await setupLogging(config.log.level, config.log.format);
  await runClient(config);
}

if (import.meta.main) await runMain(main);
