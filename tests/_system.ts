/**
 * Waiting until the system tests' processes answer: what a test calls (`waitForServers`,
 * `waitForTask`, `listServers`) and what `_harness.ts` calls as it starts a balancer
 * (`waitForBalancer`); and {@linkcode Started}, a process the harness started, with its address.
 *
 * @module
 */
import type { ChannelCredentials, ClientOptions } from "@grpc/grpc-js";
import type { EntryProcess } from "../lib/harness/entry_process.ts";
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

export { freePort, waitFor };
