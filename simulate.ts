/**
 * `deno task simulate`: a deterministic discrete-event simulation of clients, balancers and
 * servers that runs the real policies, and prints the latency and each server's share. The flags
 * live in `lib/sim/sim_flags.ts`, the model in `lib/sim/simulator.ts`.
 *
 * @module
 */
import { parseSimFlags, SIM_USAGE } from "./lib/sim/sim_flags.ts";
import { simJson, simText } from "./lib/sim/sim_report.ts";
import { simulate } from "./lib/sim/simulator.ts";
import { runMain } from "./lib/runtime/flags.ts";

function main(): Promise<void> {
  const config = parseSimFlags(Deno.args);
  if (config === "help") {
    console.log(SIM_USAGE);
    return Promise.resolve();
  }
  const result = simulate(config.options);
  const settings = { ...config.options, service: config.serviceText };
  console.log(config.json ? simJson(settings, result) : simText(settings, result));
  return Promise.resolve();
}

if (import.meta.main) await runMain(main);
