/**
 * The client: `deno task client --balancer 127.0.0.1:50051 --task cpu_heavy --requests 100`.
 *
 * Asks the balancer for a server, sends the task there, and prints a summary (`--json` for one
 * JSON object on stdout). Logic lives in `lib/client/task_client.ts` and `lib/client/load_run.ts`.
 *
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { BalancerFollower, DEFAULT_BALANCER_PREFIX } from "./lib/etcd/balancer_registry.ts";
import { CLIENT_FLAGS } from "./lib/ops/entry_flags.ts";
import { etcdSecurityFlags } from "./lib/etcd/etcd_flags.ts";
import { loadEtcd } from "./lib/etcd/etcd_loader.ts";
import {
  addressFlag,
  choiceFlag,
  etcdFlag,
  intFlag,
  numberFlag,
  parseFlags,
  runMain,
  usage,
  UsageError,
} from "./lib/ops/flags.ts";
import { formatServers, listServers, setPolicy } from "./lib/client/admin_commands.ts";
import { tokenFlag } from "./lib/wire/auth.ts";
import { runLoad } from "./lib/client/load_run.ts";
import { assertNetAccess, etcdUses } from "./lib/wire/net_access.ts";
import { POLICY_NAMES } from "./policies/mod.ts";
import { LOG_FORMATS, LOG_LEVELS, setupLogging } from "./lib/ops/log.ts";
import { ProgressBar } from "./lib/ops/progress.ts";
import { formatSummary } from "./lib/client/summary_text.ts";
import { CLIENT_MODES, DEFAULT_MAX_ATTEMPTS, TaskClient } from "./lib/client/task_client.ts";
import { tlsFlags } from "./lib/wire/tls.ts";

const PROGRAM = "client";
const USAGE = usage({
  command: "deno task client [flags]",
  about: "Asks the balancer for a server (GetServer), sends the task there (ProcessTask), and " +
    "prints a summary: throughput, latency percentiles, and each server's share.",
  examples: [
    "deno task client --task cpu_heavy --duration 10 --concurrency 4",
    "deno task client --requests 100 --json",
    "deno task client --list",
    "deno task client --balancer 127.0.0.1:50051,127.0.0.1:50061 --mode watch --duration 10",
    "deno task client --balancers-etcd http://127.0.0.1:2379 --duration 10",
    "deno task client --balancers-etcd https://10.0.0.2:2379 --etcd-ca secrets/etcd-ca.crt",
    "LB_BALANCER=10.0.0.5:50051 deno task client --set-policy least_load",
  ],
}, CLIENT_FLAGS);

async function main(): Promise<void> {
  const flags = parseFlags(PROGRAM, Deno.args, CLIENT_FLAGS);
  if (flags.help) return console.log(USAGE);
  const logLevel = choiceFlag(PROGRAM, "log-level", flags["log-level"], "warning", LOG_LEVELS);
  const logFormat = choiceFlag(PROGRAM, "log-format", flags["log-format"], "text", LOG_FORMATS);
  const security = {
    tls: tlsFlags(PROGRAM, flags, "client"),
    token: tokenFlag(PROGRAM, flags["token-file"]),
  };
  // Before the balancers are looked up in etcd, so that why etcd did not answer is logged.
  await setupLogging(logLevel as LogLevel, logFormat);
  const balancers = await balancerFlags(flags);
  if (flags.list || flags["set-policy"] !== undefined) {
    if (flags["set-policy"] !== undefined) {
      const policy = choiceFlag(
        PROGRAM,
        "set-policy",
        flags["set-policy"],
        "round_robin",
        POLICY_NAMES,
      );
      for (const balancer of balancers.addresses()) {
        const previous = await setPolicy(balancer, policy, security);
        console.log(`${prefixOf(balancers, balancer)}policy ${previous} -> ${policy}`);
      }
    }
    if (flags.list) {
      for (const balancer of balancers.addresses()) {
        const list = await listServers(balancer, security);
        const label = prefixOf(balancers, balancer);
        if (flags.json) console.log(JSON.stringify(label ? { balancer, ...list } : list));
        else console.log(`${label}${formatServers(list)}`);
      }
    }
    await balancers.stop();
    return;
  }
  if (flags.requests !== undefined && flags.duration !== undefined) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--requests' and '--duration' exclude each other`,
    );
  }
  const task = choiceFlag(PROGRAM, "task", flags.task, "simple", ["simple", "cpu_heavy", "lookup"]);
  const direct = flags.direct?.split(",").map((a) => addressFlag(PROGRAM, "direct", a.trim())!);
  await assertNetAccess(
    PROGRAM,
    (direct ?? []).map((a) => ({ flag: `--direct ${a}`, address: a })),
  );
  if (direct && task === "lookup") {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--task lookup' needs the balancer, not '--direct'`,
    );
  }
  const progressMs = flags["progress-ms"] === undefined
    ? undefined
    : intFlag(PROGRAM, "progress-ms", flags["progress-ms"], 1_000, 10, 60_000);
  const durationS = flags.duration === undefined
    ? undefined
    : numberFlag(PROGRAM, "duration", flags.duration, 0, 0.001, 86_400);
  const requests = durationS === undefined
    ? intFlag(PROGRAM, "requests", flags.requests, 10, 1, 1_000_000_000)
    : undefined;
  const concurrency = intFlag(PROGRAM, "concurrency", flags.concurrency, 1, 1, 10_000);
  const clientId = flags["client-id"] ?? `client-${Deno.pid}`;
  const client = new TaskClient({
    ...security,
    balancers,
    clientId,
    clientIds: intFlag(PROGRAM, "client-ids", flags["client-ids"], 1, 1, 1_000_000),
    direct,
    mode: choiceFlag(PROGRAM, "mode", flags.mode, "lookaside", CLIENT_MODES),
    maxAttempts: intFlag(
      PROGRAM,
      "max-attempts",
      flags["max-attempts"],
      DEFAULT_MAX_ATTEMPTS,
      1,
      100,
    ),
  });
  const bar = flags.json ? undefined : new ProgressBar();
  const json = (value: unknown) => console.log(JSON.stringify(value));
  try {
    const summary = await runLoad({
      client,
      taskType: task.toUpperCase(),
      requests,
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
    if (flags.json) {
      json({
        clientId,
        task,
        concurrency,
        ...rest,
        ...failovers,
        ...(flags.histogram ? { histogram } : {}),
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
async function balancerFlags(
  flags: ReturnType<typeof parseFlags<typeof CLIENT_FLAGS>>,
): Promise<{ addresses(): string[]; stop(): Promise<void> }> {
  const endpoints = etcdFlag(PROGRAM, flags["balancers-etcd"], "balancers-etcd");
  const etcdSecurity = etcdSecurityFlags(PROGRAM, flags, endpoints, "balancers-etcd");
  if (endpoints === undefined) {
    const list = (flags.balancer ?? "127.0.0.1:50051").split(",")
      .map((a) => addressFlag(PROGRAM, "balancer", a.trim())!);
    await assertNetAccess(PROGRAM, list.map((a) => ({ flag: `--balancer ${a}`, address: a })));
    return { addresses: () => list, stop: () => Promise.resolve() };
  }
  if (flags.balancer !== undefined) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--balancer' and '--balancers-etcd' exclude each other`,
    );
  }
  const prefix = flags["balancer-prefix"] ?? DEFAULT_BALANCER_PREFIX;
  if (prefix === "") {
    throw new UsageError(`Cannot start ${PROGRAM} as '--balancer-prefix' must not be empty`);
  }
  await assertNetAccess(PROGRAM, etcdUses(endpoints, "balancers-etcd"));
  const { createEtcdClient } = await loadEtcd();
  const etcd = createEtcdClient(endpoints, { security: etcdSecurity });
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
