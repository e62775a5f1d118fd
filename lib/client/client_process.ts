/**
 * What the client process does once its flags are parsed: find the balancers (a list, or the live
 * ones in etcd), then run the operator commands (`--list`, `--set-policy`) or a load run, printing
 * a summary or JSON.
 *
 * @module
 */
import { BalancerFollower } from "../etcd/balancer_registry.ts";
import { loadEtcd } from "../etcd/etcd_loader.ts";
import { formatServers, listServers, setPolicy } from "./admin_commands.ts";
import type {
  AdminConfig,
  BalancerSourceConfig,
  ClientConfig,
  LoadConfig,
} from "./client_flags.ts";
import { runLoad } from "./load_run.ts";
import { assertNetAccess, etcdUses } from "../wire/net_access.ts";
import { ProgressBar } from "../runtime/progress.ts";
import { formatSummary } from "./summary_text.ts";
import { TaskClient } from "./task_client.ts";

const PROGRAM = "client";

/** Runs the client's command: an operator command on every balancer, or a load run. */
export async function runClient(config: ClientConfig): Promise<void> {
  const balancers = await findBalancers(config.balancers);
  if (config.command.kind === "admin") {
    await administer(config, config.command, balancers);
  } else await load(config, config.command, balancers);
}

/** The balancers to ask, as a list that may change, and how to stop following them. */
interface Balancers {
  addresses(): string[];
  stop(): Promise<void>;
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
      ratePerS: command.ratePerS,
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
        ...(command.ratePerS === undefined ? {} : { ratePerS: command.ratePerS }),
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
