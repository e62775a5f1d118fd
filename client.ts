/**
 * The client: `deno task client --balancer 127.0.0.1:50051 --task cpu_heavy --requests 100`.
 *
 * Asks the balancer for a server, sends the task there, and prints a summary (`--json` for one
 * JSON object on stdout). The flags live in `lib/client/client_flags.ts`, the logic in
 * `lib/client/task_client.ts` and `lib/client/load_run.ts`.
 *
 * @module
 */
import { BalancerFollower } from "./lib/etcd/balancer_registry.ts";
import { loadEtcd } from "./lib/etcd/etcd_loader.ts";
import { runMain } from "./lib/ops/flags.ts";
import { formatServers, listServers, setPolicy } from "./lib/client/admin_commands.ts";
import {
  type AdminConfig,
  type BalancerSourceConfig,
  CLIENT_USAGE,
  type ClientConfig,
  type LoadConfig,
  parseClientFlags,
} from "./lib/client/client_flags.ts";
import { runLoad } from "./lib/client/load_run.ts";
import { assertNetAccess, etcdUses } from "./lib/wire/net_access.ts";
import { setupLogging } from "./lib/ops/log.ts";
import { ProgressBar } from "./lib/ops/progress.ts";
import { formatSummary } from "./lib/client/summary_text.ts";
import { TaskClient } from "./lib/client/task_client.ts";

const PROGRAM = "client";

/** The balancers to ask, as a list that may change, and how to stop following them. */
interface Balancers {
  addresses(): string[];
  stop(): Promise<void>;
}

async function main(): Promise<void> {
  const config = parseClientFlags(Deno.args);
  if (config === "help") return console.log(CLIENT_USAGE);
  // Before the balancers are looked up in etcd, so that why etcd did not answer is logged.
  await setupLogging(config.log.level, config.log.format);
  const balancers = await findBalancers(config.balancers);
  if (config.command.kind === "admin") {
    await administer(config, config.command, balancers);
  } else await load(config, config.command, balancers);
}

/** `--set-policy` and `--list`, on every balancer. */
async function administer(
  { security }: ClientConfig,
  command: AdminConfig,
  balancers: Balancers,
): Promise<void> {
  if (command.setPolicy !== undefined) {
    for (const balancer of balancers.addresses()) {
      const previous = await setPolicy(balancer, command.setPolicy, security);
      console.log(`${prefixOf(balancers, balancer)}policy ${previous} -> ${command.setPolicy}`);
    }
  }
  if (command.list) {
    for (const balancer of balancers.addresses()) {
      const list = await listServers(balancer, security);
      const label = prefixOf(balancers, balancer);
      if (command.json) console.log(JSON.stringify(label ? { balancer, ...list } : list));
      else console.log(`${label}${formatServers(list)}`);
    }
  }
  await balancers.stop();
}

/** A load run: the tasks, a progress bar (or progress objects), and the summary. */
async function load(
  { security }: ClientConfig,
  command: LoadConfig,
  balancers: Balancers,
): Promise<void> {
  const { task, direct, durationS, concurrency, clientId, progressMs } = command;
  await assertNetAccess(
    PROGRAM,
    (direct ?? []).map((a) => ({ flag: `--direct ${a}`, address: a })),
  );
  const client = new TaskClient({
    ...security,
    balancers,
    clientId,
    clientIds: command.clientIds,
    direct,
    mode: command.mode,
    maxAttempts: command.maxAttempts,
  });
  const bar = command.json ? undefined : new ProgressBar();
  const json = (value: unknown) => console.log(JSON.stringify(value));
  try {
    const summary = await runLoad({
      client,
      taskType: task.toUpperCase(),
      requests: command.requests,
      durationMs: durationS === undefined ? undefined : durationS * 1_000,
      concurrency,
      idPrefix: clientId,
      progressEveryMs: progressMs,
      onProgress: bar
        ? (p) => bar.update(task, p.fraction, `${p.completed} ok, ${p.failed} failed`)
        : progressMs
        ? (p) => json({ progress: p })
        : undefined,
    });
    bar?.done();
    const { histogram, ...rest } = summary;
    // With several balancers, how often the client had to move to another one, and back.
    const failovers = client.balancers().length > 1
      ? { balancerFailovers: client.failovers, balancerReturns: client.returns }
      : {};
    if (command.json) {
      json({
        clientId,
        task,
        concurrency,
        ...rest,
        ...failovers,
        ...(command.histogram ? { histogram } : {}),
      });
    } else {
      console.log(formatSummary(summary));
      if ("balancerFailovers" in failovers) {
        console.log(
          `balancer failovers: ${failovers.balancerFailovers}, returns: ${failovers.balancerReturns}`,
        );
      }
    }
    if (summary.succeeded === 0) Deno.exitCode = 1;
  } finally {
    client.close();
    await balancers.stop();
  }
}

/**
 * The balancers to ask: the `--balancer` list, or the live ones in `--balancers-etcd` (reached
 * with the etcd TLS and auth flags).
 */
async function findBalancers(source: BalancerSourceConfig): Promise<Balancers> {
  if (source.kind === "list") {
    const list = source.addresses;
    await assertNetAccess(PROGRAM, list.map((a) => ({ flag: `--balancer ${a}`, address: a })));
    return { addresses: () => list, stop: () => Promise.resolve() };
  }
  const { endpoints, prefix } = source;
  await assertNetAccess(PROGRAM, etcdUses(endpoints, "balancers-etcd"));
  const { createEtcdClient } = await loadEtcd();
  const etcd = createEtcdClient(endpoints, { security: source.security });
  const follower = new BalancerFollower();
  const listed = await follower.start(etcd, prefix);
  const stop = async () => {
    await follower.stop();
    etcd.close();
  };
  if (follower.set.size === 0) {
    await stop();
    throw new Error(
      listed
        ? `No balancer is registered under '${prefix}' in etcd ${endpoints.join(",")}`
        : `Cannot find the balancers as etcd ${endpoints.join(",")} did not answer (see above)`,
    );
  }
  return { addresses: () => follower.set.addresses(), stop };
}

/** Before each balancer's output when there are several: its address. */
function prefixOf(balancers: { addresses(): string[] }, balancer: string): string {
  return balancers.addresses().length > 1 ? `balancer ${balancer}: ` : "";
}

if (import.meta.main) await runMain(main);
