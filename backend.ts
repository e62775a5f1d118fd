/**
 * A backend server: `deno task backend --port 50052 [--balancer 127.0.0.1:50051] [--etcd URL]`.
 *
 * Flags in, objects built, started. The flags live in `lib/backend/backend_flags.ts`, the logic
 * in `lib/backend/backend_process.ts`.
 *
 * @module
 */
import { Backend } from "./lib/backend/backend_process.ts";
import { BACKEND_USAGE, parseBackendFlags } from "./lib/backend/backend_flags.ts";
import { onShutdownSignal, runMain } from "./lib/runtime/flags.ts";
import { setupLogging } from "./lib/runtime/log.ts";
import { assertNetAccess, etcdUses, listenUses } from "./lib/wire/net_access.ts";

const PROGRAM = "backend";

async function main(): Promise<void> {
  const config = parseBackendFlags(Deno.args);
  if (config === "help") return console.log(BACKEND_USAGE);
  const { host, port, http, balancer, etcd } = config.backend;
  await assertNetAccess(PROGRAM, [
    ...listenUses(host, port, http),
    ...(balancer ? [{ flag: `--balancer ${balancer}`, address: balancer }] : []),
    ...etcdUses(etcd?.endpoints),
  ]);
  const backend = new Backend(config.backend);
  await setupLogging(config.log.level, config.log.format);
  onShutdownSignal(() => backend.stop());
  await backend.start();
}

if (import.meta.main) await runMain(main);
