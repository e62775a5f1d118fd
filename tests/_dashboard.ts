/**
 * Helpers for the dashboard test and the docs' screenshot that need no browser: a balancer
 * with `--http-port` and its backends, and a load that runs until it is stopped.
 *
 * @module
 */
import { withToken } from "../lib/wire/auth.ts";
import type { LoadBalancerClient } from "../lib/wire/proto.ts";
import type { TaskClient } from "../lib/client/task_client.ts";
import {
  createLoadBalancerClient,
  freePort,
  startBackend,
  startBalancer,
  type Started,
  stopAll,
  waitForServers,
} from "./_system.ts";

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
 * Starts a balancer with `--http-port` (and `balancerArgs`), one backend per entry of
 * `backendArgs` (each with `--balancer`, and `--token-file` when given), and waits until every
 * backend is in the picks and has reported its load.
 */
export async function startDashboardSystem(options: {
  balancerArgs?: string[];
  backendArgs: string[][];
  token?: { file: string; value: string };
}): Promise<DashboardSystem> {
  const httpPort = freePort();
  const tokenArgs = options.token ? ["--token-file", options.token.file] : [];
  const clientOptions = withToken({}, options.token?.value);
  const balancer = await startBalancer(
    ["--http-port", String(httpPort), ...tokenArgs, ...options.balancerArgs ?? []],
    undefined,
    undefined,
    clientOptions,
  );
  const backends = options.backendArgs.map((args) =>
    startBackend(["--balancer", balancer.address, ...tokenArgs, ...args])
  );
  const lb = createLoadBalancerClient(balancer.address, undefined, undefined, clientOptions);
  try {
    await waitForServers(lb, backends.map((b) => b.address), 20_000, true);
  } catch (error) {
    lb.close();
    await stopAll(balancer, ...backends);
    throw error;
  }
  return { base: `http://127.0.0.1:${httpPort}`, balancer, backends, lb };
}

/** A load running in the background. */
export interface Load {
  /** Tasks that succeeded and failed so far. */
  readonly done: { ok: number; failed: number };
  /** Stops sending and waits for the tasks in flight. */
  stop(): Promise<void>;
}

/**
 * Sends `taskType` tasks through `client` from `concurrency` loops until stopped, pausing
 * `pauseMs` between two tasks of a loop (so a SIMPLE load leaves the CPUs to the rest).
 */
export function startLoad(
  client: TaskClient,
  taskType: string,
  concurrency: number,
  pauseMs = 0,
): Load {
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
  return {
    done,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}
