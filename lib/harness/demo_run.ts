/**
 * `deno task demo`: the whole system on one machine. It starts a balancer and three backends as
 * separate processes (one backend slower than the others, so the policies differ), then for each
 * policy switches the balancer to it and runs a client load with a progress bar; at the end it
 * tears everything down and prints one table.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { PolicyName } from "../../policies/mod.ts";
import { type EntryProcess, spawnEntry } from "./entry_process.ts";
import { startEtcd } from "./etcd_process.ts";
import { type LoadRunSummary, runLoad } from "../client/load_run.ts";
import { freePort } from "./ports.ts";
import { ProgressBar } from "../runtime/progress.ts";
import { setPolicy } from "../client/admin_commands.ts";
import { createLoadBalancerClient, POLLING_CHANNEL_OPTIONS, unary } from "../wire/proto.ts";
import { percent, textTable } from "../client/summary_text.ts";
import { TaskClient } from "../client/task_client.ts";
import { waitFor } from "./wait.ts";

const log = getLogger(["lb", "demo"]);

/** Options of {@linkcode runDemo}. */
export interface DemoOptions {
  policies: PolicyName[];
  /** Seconds of load per policy. */
  durationS: number;
  concurrency: number;
  /** `simple` or `cpu_heavy`. */
  task: string;
  backends: number;
  /** Slowdown of the last backend (1 makes them all equal). */
  slowdown: number;
  discovery: "builtin" | "etcd";
  /** etcd endpoints for etcd discovery; without them a throwaway etcd is started. */
  etcd?: string;
  /** Port of the balancer's dashboard; 0 picks a free one. @default {0} */
  httpPort?: number;
  /** Told the dashboard's URL once the balancer is up. */
  onDashboard?: (url: string) => void;
}

/** Where the demo keeps a throwaway etcd's data while it runs (removed after). */
export const DEMO_ETCD_DIR = ".demo-etcd";

/** One policy's outcome. */
export interface DemoResult {
  policy: PolicyName;
  backends: string[];
  summary: LoadRunSummary;
}

/** Runs the demo and returns one result per policy. */
export async function runDemo(options: DemoOptions): Promise<DemoResult[]> {
  if (options.discovery === "etcd" && !options.etcd) {
    const etcd = await startEtcd({ parentDir: DEMO_ETCD_DIR });
    try {
      return await runPolicies({ ...options, etcd: etcd.endpoint });
    } finally {
      await etcd.close();
    }
  }
  return await runPolicies(options);
}

async function runPolicies(options: DemoOptions): Promise<DemoResult[]> {
  const results: DemoResult[] = [];
  const bar = new ProgressBar();
  const children: EntryProcess[] = [];
  try {
    // One balancer and one set of backends for every policy, switched with SetPolicy, as an
    // operator would: the servers' reports have settled by the time the adaptive policies run.
    const balancerPort = freePort();
    const balancer = `127.0.0.1:${balancerPort}`;
    const prefix = `/demo-${Deno.pid}/`;
    const discovery = options.discovery === "etcd"
      ? ["--discovery", "etcd", "--etcd", options.etcd!, "--etcd-prefix", prefix]
      : ["--discovery", "builtin"];
    const httpPort = options.httpPort || freePort();
    children.push(
      spawnEntry("balancer", [
        "--port",
        String(balancerPort),
        "--http-port",
        String(httpPort),
        ...discovery,
      ], { name: "balancer" }),
    );
    const backends: string[] = [];
    for (let i = 0; i < options.backends; i++) {
      const port = freePort();
      const slow = i === options.backends - 1 ? options.slowdown : 1;
      backends.push(`127.0.0.1:${port}`);
      const registration = options.discovery === "etcd"
        ? ["--etcd", options.etcd!, "--etcd-prefix", prefix]
        : [];
      children.push(spawnEntry("backend", [
        "--port",
        String(port),
        "--balancer",
        balancer,
        "--slowdown",
        String(slow),
        ...registration,
      ], { name: `backend ${port}` }));
    }
    await waitForServers(balancer, backends.length, children);
    options.onDashboard?.(`http://127.0.0.1:${httpPort}/`);
    for (const policy of options.policies) {
      await setPolicy(balancer, policy);
      // 1,000 client ids, so consistent_hash has users to spread.
      const client = new TaskClient({ balancer, clientId: `demo-${policy}`, clientIds: 1_000 });
      try {
        const summary = await runLoad({
          client,
          taskType: options.task.toUpperCase(),
          durationMs: options.durationS * 1_000,
          concurrency: options.concurrency,
          idPrefix: policy,
          onProgress: (p) =>
            bar.update(
              policy.padEnd(20),
              p.fraction,
              `${(p.elapsedMs / 1_000).toFixed(1)}/${options.durationS} s  ${
                (p.completed / Math.max(0.001, p.elapsedMs / 1_000)).toFixed(1)
              } req/s`,
            ),
        });
        bar.done();
        results.push({ policy, backends, summary });
      } finally {
        client.close();
      }
    }
  } finally {
    await Promise.all(children.map((child) => child.stop(5_000)));
  }
  return results;
}

/** Waits until the balancer lists `count` servers with a load report each. */
async function waitForServers(
  balancer: string,
  count: number,
  children: EntryProcess[],
): Promise<void> {
  const client = createLoadBalancerClient(balancer, undefined, undefined, POLLING_CHANNEL_OPTIONS);
  try {
    await waitFor(
      `${count} backends to register with ${balancer}`,
      async () => {
        const dead = children.find((c) => c.exited);
        if (dead) throw new Error(`${dead.name} exited early:\n${dead.log()}`);
        const list = await unary(client.ListServers, client, {}, { deadline: Date.now() + 1_000 });
        return list.servers.filter((s) => s.has_load).length >= count;
      },
      20_000,
      100,
    );
  } catch (error) {
    log.error("Start-up failed: {error}", { error });
    throw error;
  } finally {
    client.close();
  }
}

/** The demo's table: one row per policy. */
export function formatDemoTable(results: DemoResult[], slowdown: number): string {
  const n = results[0]?.backends.length ?? 0;
  const header = [
    "policy",
    "req/s",
    "p50 ms",
    "p99 ms",
    "failed",
    ...Array.from(
      { length: n },
      (_, i) =>
        i === n - 1 && slowdown !== 1 ? `server ${i + 1} (x${slowdown} slow)` : `server ${i + 1}`,
    ),
  ];
  const rows = results.map(({ policy, backends, summary }) => [
    policy,
    summary.throughput.toFixed(1),
    summary.latencyMs.p50.toFixed(1),
    summary.latencyMs.p99.toFixed(1),
    String(summary.failed),
    ...backends.map((address) => percent(summary.perServer[address] ?? 0, summary.succeeded)),
  ]);
  return textTable([header, ...rows]);
}
