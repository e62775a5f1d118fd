/**
 * The client: `deno task client --balancer 127.0.0.1:50051 --task cpu_heavy --requests 100`.
 *
 * Asks the balancer for a server, sends the task there, and prints a summary (`--json` for one
 * JSON object on stdout). Logic lives in `lib/task_client.ts` and `lib/load_run.ts`.
 *
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import {
  addressFlag,
  choiceFlag,
  intFlag,
  numberFlag,
  parseFlags,
  runMain,
  UsageError,
} from "./lib/flags.ts";
import { formatServers, listServers, setPolicy } from "./lib/admin.ts";
import { tokenFlag } from "./lib/auth.ts";
import { runLoad } from "./lib/load_run.ts";
import { POLICY_NAMES } from "./policies/mod.ts";
import { LOG_LEVELS, setupLogging } from "./lib/log.ts";
import { ProgressBar } from "./lib/progress.ts";
import { formatSummary } from "./lib/summary_text.ts";
import { CLIENT_MODES, DEFAULT_MAX_ATTEMPTS, TaskClient } from "./lib/task_client.ts";
import { tlsFlags } from "./lib/tls.ts";

const PROGRAM = "client";
const USAGE = `Usage: deno task client [flags]

  --balancer HOST:PORT   balancer to ask (default 127.0.0.1:50051)
  --task TYPE            simple | cpu_heavy | lookup (default simple); lookup only asks the
                         balancer, to measure it alone
  --requests N           send N tasks (default 10, unless --duration is given)
  --duration S           send tasks for S seconds instead
  --concurrency C        tasks in flight at once (default 1)
  --client-id ID         sent with every GetServer (default client-<pid>)
  --client-ids N         act as N clients, ID-0 to ID-<N-1>, one per task in turn (default 1)
  --max-attempts N       attempts per task when calls to servers fail in transport (default ${DEFAULT_MAX_ATTEMPTS})
  --mode MODE            lookaside: GetServer before every task (default, as the original);
                         watch: subscribe to WatchServers and pick locally (one RPC per task)
  --direct HOST:PORT,..  skip the balancer: send to these backends in turn (a baseline)
  --list                 print the balancer's policy and servers (with --json: as JSON), and exit
  --set-policy NAME      switch the balancer to another policy, and exit
  --json                 print the summary as one JSON object on stdout
  --progress-ms MS       with --json: also print a progress object every MS ms before it
  --histogram            with --json: include the latency histogram (compressed base64)
  --token-file PATH      send the control-plane token in this file on every call to the
                         balancer (its --token-file); keep it under ./secrets
  --tls-ca PATH          use TLS to the balancer and backends, trusting this CA (PEM)
  --tls-cert PATH        with --tls-key: the client certificate, for a --tls-mutual balancer
  --tls-key PATH         the client certificate's private key
  --log-level LEVEL      ${LOG_LEVELS.join(" | ")} (default warning)
  --help                 show this text`;

async function main(): Promise<void> {
  const flags = parseFlags(PROGRAM, Deno.args, {
    balancer: { type: "string" },
    task: { type: "string" },
    requests: { type: "string" },
    duration: { type: "string" },
    concurrency: { type: "string" },
    "client-id": { type: "string" },
    "client-ids": { type: "string" },
    "max-attempts": { type: "string" },
    direct: { type: "string" },
    mode: { type: "string" },
    json: { type: "boolean" },
    list: { type: "boolean" },
    "set-policy": { type: "string" },
    "progress-ms": { type: "string" },
    histogram: { type: "boolean" },
    "token-file": { type: "string" },
    "tls-ca": { type: "string" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    "log-level": { type: "string" },
    help: { type: "boolean" },
  });
  if (flags.help) return console.log(USAGE);
  const balancer = addressFlag(PROGRAM, "balancer", flags.balancer, "127.0.0.1:50051")!;
  const security = {
    tls: tlsFlags(PROGRAM, flags, "client"),
    token: tokenFlag(PROGRAM, flags["token-file"]),
  };
  if (flags.list || flags["set-policy"] !== undefined) {
    await setupLogging("warning");
    if (flags["set-policy"] !== undefined) {
      const policy = choiceFlag(
        PROGRAM,
        "set-policy",
        flags["set-policy"],
        "round_robin",
        POLICY_NAMES,
      );
      const previous = await setPolicy(balancer, policy, security);
      console.log(`policy ${previous} -> ${policy}`);
    }
    if (flags.list) {
      const list = await listServers(balancer, security);
      console.log(flags.json ? JSON.stringify(list) : formatServers(list));
    }
    return;
  }
  if (flags.requests !== undefined && flags.duration !== undefined) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--requests' and '--duration' exclude each other`,
    );
  }
  const task = choiceFlag(PROGRAM, "task", flags.task, "simple", ["simple", "cpu_heavy", "lookup"]);
  const direct = flags.direct?.split(",").map((a) => addressFlag(PROGRAM, "direct", a.trim())!);
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
    balancer,
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
  await setupLogging(
    choiceFlag(PROGRAM, "log-level", flags["log-level"], "warning", LOG_LEVELS) as LogLevel,
  );
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
    if (flags.json) {
      json({ clientId, task, concurrency, ...rest, ...(flags.histogram ? { histogram } : {}) });
    } else console.log(formatSummary(summary));
    if (summary.succeeded === 0) Deno.exitCode = 1;
  } finally {
    client.close();
  }
}

if (import.meta.main) await runMain(main);
