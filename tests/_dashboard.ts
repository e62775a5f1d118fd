/**
 * The set-up of the dashboard test and of its browser scenario, on a {@linkcode TestSystem}: a
 * balancer with `--http-port` and its backends, and a paced load that runs until it is stopped.
 *
 * @module
 */
import { withToken } from "../lib/wire/auth.ts";
import type { LoadBalancerClient } from "../lib/wire/proto.ts";
import type { TaskClient } from "../lib/client/task_client.ts";
import type { TestSystem } from "./_harness.ts";
import { freePort, type Started } from "./_system.ts";

/** A balancer serving the dashboard, its backends, and a client to it. */
export interface DashboardSystem {
  /** `http://127.0.0.1:<port>`: the dashboard. */
  base: string;
  balancer: Started;
  backends: Started[];
  /** `LoadBalancer` client (with the token, if any). */
  lb: LoadBalancerClient;
}

/**
 * Starts on `sys` a balancer with `--http-port` (and `balancerArgs`) and `backends` backends
 * (each with `--balancer`, and `--token-file` when given), and waits until every backend is in
 * the picks and has reported its load.
 */
export async function dashboardSystem(sys: TestSystem, options: {
  balancerArgs?: string[];
  backends: number;
  token?: { file: string; value: string };
}): Promise<DashboardSystem> {
  const httpPort = freePort();
  const tokenArgs = options.token ? ["--token-file", options.token.file] : [];
  const { balancer, backends, lb } = await sys.balancerWithBackends({
    balancerArgs: ["--http-port", String(httpPort), ...tokenArgs, ...options.balancerArgs ?? []],
    clientOptions: withToken({}, options.token?.value),
    backends: options.backends,
    backendArgs: tokenArgs,
    withLoad: true,
    timeoutMs: 20_000,
  });
  return { base: `http://127.0.0.1:${httpPort}`, balancer, backends, lb };
}

/** A load running in the background. */
export interface PacedLoad {
  /** Tasks that succeeded and failed so far. */
  readonly done: { ok: number; failed: number };
}

/**
 * Sends `taskType` tasks through `client` (made on `sys` before) from `concurrency` loops until
 * `sys` is torn down, pausing `pauseMs` between two tasks of a loop (so a SIMPLE load leaves the CPUs to the rest).
 */
export function pacedLoad(
  sys: TestSystem,
  client: TaskClient,
  taskType: string,
  concurrency: number,
  pauseMs = 0,
): PacedLoad {
  let running = true;
  const done = { ok: 0, failed: 0 };
  const loop = async (n: number) => {
    for (let i = 0; running; i++) {
      const outcome = await client.run(`load-${n}-${i}`, taskType);
      if (outcome.ok) done.ok++;
      else done.failed++;
      if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  };
  const loops = Array.from({ length: concurrency }, (_, n) => loop(n));
  // Teardown runs what was deferred last first: the load stops sending, and its tasks in flight
  // end, before a client made earlier closes.
  sys.defer(async () => {
    running = false;
    await Promise.all(loops);
  });
  return { done };
}
