/**
 * The load balancer: `deno task balancer [--policy least_load] [--etcd http://127.0.0.1:2379]`.
 *
 * Flags in, objects built, started. The flags live in `lib/balancer/balancer_flags.ts`, the logic
 * in `lib/balancer/balancer_process.ts`.
 *
 * @module
 */
import { Balancer } from "./lib/balancer/balancer_process.ts";
import { BALANCER_USAGE, parseBalancerFlags } from "./lib/balancer/balancer_flags.ts";
import { onShutdownSignal, runMain } from "./lib/runtime/flags.ts";
import { setupLogging } from "./lib/runtime/log.ts";
import { assertNetAccess, etcdUses, listenUses } from "./lib/wire/net_access.ts";

const PROGRAM = "balancer";

async function main(): Promise<void> {
  const config = parseBalancerFlags(Deno.args);
  if (config === "help") return console.log(BALANCER_USAGE);
  const { host, port, http } = config.balancer;
  await assertNetAccess(PROGRAM, [...listenUses(host, port, http), ...etcdUses(config.etcd)]);
  await setupLogging(config.log.level, config.log.format);
  const balancer = new Balancer(config.balancer);
  onShutdownSignal(() => balancer.stop());
  await balancer.start();
}

if (import.meta.main) await runMain(main);
