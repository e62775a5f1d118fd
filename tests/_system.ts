/**
 * Our real entries as processes on free ports, and waiting until they answer: the pieces of the
 * system tests' harness (`_harness.ts`, through which a test starts them so they are torn down),
 * and what a test calls to wait on them (`waitForServers`, `waitForTask`, `listServers`).
 *
 * @module
 */
import type { ChannelCredentials, ClientOptions } from "@grpc/grpc-js";
import { type EntryProcess, spawnEntry } from "../lib/harness/entry_process.ts";
import { freePort } from "../lib/harness/ports.ts";
import {
  type BackendClient,
  createLoadBalancerClient,
  type ListServersResponse,
  type LoadBalancerClient,
  POLLING_CHANNEL_OPTIONS,
  type TaskResponse,
  unary,
} from "../lib/wire/proto.ts";
import { waitFor } from "../lib/harness/wait.ts";

/** A started process with its address. */
export interface Started {
  address: string;
  port: number;
  process: EntryProcess;
}

/**
 * Starts a balancer on `port` (a free one by default; a restart passes the old one) and waits
 * until it answers `ListServers` (asked with `credentials` and `clientOptions`, for a balancer
 * with TLS or a token).
 */
export async function startBalancer(
  args: string[] = [],
  port = freePort(),
  credentials?: ChannelCredentials,
  clientOptions: ClientOptions = {},
): Promise<Started> {
  const balancer = spawnBalancer(args, port);
  await waitForBalancer(balancer, credentials, clientOptions);
  return balancer;
}

/** Starts a balancer on `port` with debug logs; {@linkcode waitForBalancer} waits for it. */
export function spawnBalancer(args: string[] = [], port = freePort()): Started {
  const process = spawnEntry("balancer", ["--port", String(port), "--log-level", "debug", ...args]);
  return { address: `127.0.0.1:${port}`, port, process };
}

/**
 * Waits until `balancer` answers `ListServers` (asked with `credentials` and `clientOptions`);
 * fails at once, with its log, if it exits.
 */
export async function waitForBalancer(
  balancer: Started,
  credentials?: ChannelCredentials,
  clientOptions: ClientOptions = {},
): Promise<void> {
  const { address, process } = balancer;
  const client = createLoadBalancerClient(address, credentials, undefined, {
    ...POLLING_CHANNEL_OPTIONS,
    ...clientOptions,
  });
  try {
    await waitFor(
      `balancer ${address} to answer`,
      async () => {
        if (process.exited) throw new Error(`balancer exited:\n${process.log()}`);
        return await listServers(client);
      },
      20_000,
      50,
    );
  } finally {
    client.close();
  }
}

/** Starts a backend on a free port with `args` (give it `--balancer` or `--etcd`). */
export function startBackend(args: string[]): Started {
  const port = freePort();
  const process = spawnEntry("backend", [
    "--port",
    String(port),
    "--report-interval-ms",
    "200",
    "--work-units",
    "1",
    "--log-level",
    "debug",
    ...args,
  ]);
  return { address: `127.0.0.1:${port}`, port, process };
}

/** Calls `ListServers`. */
export function listServers(client: LoadBalancerClient): Promise<ListServersResponse> {
  return unary(client.ListServers, client, {}, { deadline: Date.now() + 2_000 });
}

/** Waits until the balancer lists exactly `addresses` (in any order), all in the picks. */
export async function waitForServers(
  client: LoadBalancerClient,
  addresses: string[],
  timeoutMs = 15_000,
  withLoad = false,
): Promise<void> {
  const want = [...addresses].sort().join(",");
  await waitFor(
    `balancer to list [${want}]`,
    async () => {
      const list = await listServers(client);
      const have = list.servers.filter((s) => s.healthy && (!withLoad || s.has_load));
      return list.servers.length === addresses.length &&
        have.map((s) => s.server_address).sort().join(",") === want;
    },
    timeoutMs,
    25,
  );
}

/** Runs a task, retrying until the backend is up (for a backend that is still starting). */
export async function waitForTask(
  backend: BackendClient,
  taskId: string,
  taskType: string,
  timeoutMs = 15_000,
): Promise<TaskResponse> {
  return await waitFor(
    `backend to run task ${taskId}`,
    () =>
      unary(backend.ProcessTask, backend, { task_id: taskId, task_type: taskType }, {
        deadline: Date.now() + 2_000,
      }),
    timeoutMs,
    50,
  );
}

/** Stops every process, ignoring those already gone. */
export async function stopAll(
  ...started: ({ process: EntryProcess } | undefined)[]
): Promise<void> {
  await Promise.all(started.map((s) => s?.process.stop(5_000)));
}

export { createLoadBalancerClient, freePort, waitFor };
