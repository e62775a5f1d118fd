/**
 * The client's flags: their table (types, help, defaults, shown by `--help` and read by
 * {@linkcode parseClientFlags}), and their parsing into a checked {@linkcode ClientConfig}.
 * Every flag may also be set with its `LB_*` variable (`lib/runtime/flags.ts`).
 *
 * @module
 */
import { POLICY_NAMES, type PolicyName } from "../../policies/mod.ts";
import { CLIENT_MODES, type ClientMode, DEFAULT_MAX_ATTEMPTS } from "./task_client.ts";
import { DEFAULT_BALANCER_PREFIX } from "../etcd/balancer_registry.ts";
import type { EtcdSecurity } from "../etcd/etcd_client.ts";
import { ETCD_SECURITY_FLAGS, etcdSecurityFlags } from "../etcd/etcd_flags.ts";
import {
  etcdFlag,
  FlagReader,
  type FlagSpecs,
  type FlagValues,
  HELP_FLAG,
  parseFlags,
  usage,
  UsageError,
} from "../runtime/flags.ts";
import { addressFlag } from "../wire/address.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogConfig, logFlags } from "../runtime/log.ts";
import { tokenFlag } from "../wire/auth.ts";
import { type TlsConfig, tlsFlags } from "../wire/tls.ts";

const PROGRAM = "client";

/** Task types of `--task`: `lookup` only asks the balancer. */
const CLIENT_TASKS = ["simple", "cpu_heavy", "lookup"] as const;

/** The client's flags. */
/** Most tasks in flight in an open-loop run (`--rate`) unless `--concurrency` says. */
export const OPEN_LOOP_MAX_IN_FLIGHT = 1_000;

export const CLIENT_FLAGS = {
  balancer: {
    type: "string",
    arg: "HOST:PORT[,..]",
    help: "balancer(s) to ask: with several, the client starts at one chosen by its id and " +
      "moves to the next when it fails",
    default: "127.0.0.1:50051",
  },
  "balancers-etcd": {
    type: "string",
    arg: "URL[,URL]",
    help: "find the live balancers in this etcd instead (under --balancer-prefix)",
  },
  "balancer-prefix": {
    type: "string",
    arg: "PREFIX",
    help: "with --balancers-etcd: the key prefix balancers register under",
    default: DEFAULT_BALANCER_PREFIX,
  },
  // Securing --balancers-etcd, as the balancer's and backend's --etcd.
  ...ETCD_SECURITY_FLAGS,
  task: {
    type: "string",
    arg: "TYPE",
    help: "simple | cpu_heavy | lookup; lookup only asks the balancer, to measure it alone",
    default: "simple",
  },
  requests: {
    type: "string",
    arg: "N",
    help: "send N tasks (unless --duration is given)",
    default: 10,
  },
  duration: { type: "string", arg: "S", help: "send tasks for S seconds instead" },
  concurrency: {
    type: "string",
    arg: "C",
    help: `tasks in flight at once (with --rate: at most; default ${OPEN_LOOP_MAX_IN_FLIGHT} then)`,
    default: 1,
  },
  rate: {
    type: "string",
    arg: "R",
    help: "open loop: send R tasks a second on average (Poisson arrivals), each one's latency " +
      "counted from its scheduled arrival, whether or not earlier ones have returned",
  },
  "client-id": {
    type: "string",
    arg: "ID",
    help: "sent with every GetServer",
    // As `--help` shows it; the value is this process's id (parseClientFlags).
    default: "client-<pid>",
  },
  "client-ids": {
    type: "string",
    arg: "N",
    help: "act as N clients, ID-0 to ID-<N-1>, one per task in turn",
    default: 1,
  },
  "max-attempts": {
    type: "string",
    arg: "N",
    help: "attempts per task when calls to servers fail in transport",
    default: DEFAULT_MAX_ATTEMPTS,
  },
  direct: {
    type: "string",
    arg: "HOST:PORT,..",
    help: "skip the balancer: send to these backends in turn (a baseline)",
  },
  mode: {
    type: "string",
    arg: "MODE",
    help: `${CLIENT_MODES.join(" | ")}: lookaside asks GetServer before every task (as the ` +
      "original); watch subscribes to WatchServers and picks locally (one RPC per task)",
    default: "lookaside",
  },
  json: { type: "boolean", help: "print the summary as one JSON object on stdout" },
  list: {
    type: "boolean",
    help: "print the balancer's policy and servers (with --json: as JSON), and exit",
  },
  "set-policy": {
    type: "string",
    arg: "NAME",
    help: "switch the balancer to another policy, and exit",
  },
  "progress-ms": {
    type: "string",
    arg: "MS",
    help: "with --json: also print a progress object every MS ms before it",
  },
  histogram: {
    type: "boolean",
    help: "with --json: include the latency histogram (compressed base64)",
  },
  "token-file": {
    type: "string",
    arg: "PATH",
    help: "send the control-plane token in this file on every call to the balancer (its " +
      "--token-file); keep it under ./secrets",
  },
  "tls-ca": {
    type: "string",
    arg: "PATH",
    help: "use TLS to the balancer and backends, trusting this CA (PEM)",
  },
  "tls-cert": {
    type: "string",
    arg: "PATH",
    help: "with --tls-key: the client certificate, for a --tls-mutual balancer",
  },
  "tls-key": { type: "string", arg: "PATH", help: "the client certificate's private key" },
  ...logFlags("warning"),
  ...HELP_FLAG,
} as const satisfies FlagSpecs;

/** The client's `--help`. */
export const CLIENT_USAGE = usage({
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

/** The balancers to ask: the `--balancer` list, or the live ones in `--balancers-etcd`. */
export type BalancerSourceConfig =
  | { kind: "list"; addresses: string[] }
  | { kind: "etcd"; endpoints: string[]; security?: EtcdSecurity; prefix: string };

/** `--list` and `--set-policy`: talk to the balancers, and exit. */
export interface AdminConfig {
  kind: "admin";
  list: boolean;
  setPolicy?: PolicyName;
  json: boolean;
}

/** A load run: send tasks, and print a summary. */
export interface LoadConfig {
  kind: "load";
  task: typeof CLIENT_TASKS[number];
  /** `--direct`: these backends in turn, no balancer. */
  direct?: string[];
  /** Tasks to send; `undefined` with `durationS`. */
  requests?: number;
  durationS?: number;
  concurrency: number;
  /** Open loop at this mean rate (tasks per second); closed loop when absent. */
  ratePerS?: number;
  progressMs?: number;
  clientId: string;
  clientIds: number;
  mode: ClientMode;
  maxAttempts: number;
  json: boolean;
  histogram: boolean;
}

/** The client's flags, checked. */
export interface ClientConfig {
  /** TLS to the balancer and the backends, and the control-plane token to the balancer. */
  security: { tls?: TlsConfig; token?: string };
  balancers: BalancerSourceConfig;
  command: AdminConfig | LoadConfig;
  log: LogConfig;
}

/**
 * Parses and checks the client's command line (and `LB_*` variables): `"help"` for `--help`,
 * else its config, with the files it names read. A bad flag throws a {@linkcode UsageError}
 * naming it. With `--list` or `--set-policy`, the flags of a load run are not read.
 */
export function parseClientFlags(args: string[]): ClientConfig | "help" {
  const flags = parseFlags(PROGRAM, args, CLIENT_FLAGS);
  if (flags.help) return "help";
  const read = new FlagReader(PROGRAM, CLIENT_FLAGS, flags);
  const log = {
    level: read.choice("log-level", LOG_LEVELS),
    format: read.choice("log-format", LOG_FORMATS),
  };
  const security = {
    tls: tlsFlags(PROGRAM, flags, "client"),
    token: tokenFlag(PROGRAM, flags["token-file"]),
  };
  const balancers = balancerSource(flags, read);
  const json = read.boolean("json");
  if (flags.list || flags["set-policy"] !== undefined) {
    const setPolicy = read.choice("set-policy", POLICY_NAMES);
    return {
      security,
      balancers,
      command: { kind: "admin", list: read.boolean("list"), setPolicy, json },
      log,
    };
  }
  if (flags.requests !== undefined && flags.duration !== undefined) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--requests' and '--duration' exclude each other`,
    );
  }
  const task = read.choice("task", CLIENT_TASKS);
  const direct = flags.direct?.split(",").map((a) => addressFlag(PROGRAM, "direct", a.trim())!);
  if (direct && task === "lookup") {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--task lookup' needs the balancer, not '--direct'`,
    );
  }
  const progressMs = read.int("progress-ms", 10, 60_000);
  const durationS = read.number("duration", 0.001, 86_400);
  const ratePerS = read.number("rate", 0.001, 1_000_000);
  const command: LoadConfig = {
    kind: "load",
    task,
    direct,
    requests: durationS === undefined ? read.int("requests", 1, 1_000_000_000) : undefined,
    durationS,
    concurrency: ratePerS !== undefined && flags.concurrency === undefined
      ? OPEN_LOOP_MAX_IN_FLIGHT
      : read.int("concurrency", 1, 10_000),
    ratePerS,
    progressMs,
    clientId: flags["client-id"] ?? `client-${Deno.pid}`,
    clientIds: read.int("client-ids", 1, 1_000_000),
    mode: read.choice("mode", CLIENT_MODES),
    maxAttempts: read.int("max-attempts", 1, 100),
    json,
    histogram: read.boolean("histogram"),
  };
  return { security, balancers, command, log };
}

/** Reads `--balancer`, or `--balancers-etcd` with its prefix and the etcd security flags. */
function balancerSource(
  flags: FlagValues<typeof CLIENT_FLAGS>,
  read: FlagReader<typeof CLIENT_FLAGS>,
): BalancerSourceConfig {
  const endpoints = etcdFlag(PROGRAM, flags["balancers-etcd"], "balancers-etcd");
  const security = etcdSecurityFlags(PROGRAM, flags, endpoints, "balancers-etcd");
  if (endpoints === undefined) {
    const addresses = read.string("balancer").split(",")
      .map((a) => addressFlag(PROGRAM, "balancer", a.trim())!);
    return { kind: "list", addresses };
  }
  if (flags.balancer !== undefined) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--balancer' and '--balancers-etcd' exclude each other`,
    );
  }
  const prefix = read.string("balancer-prefix");
  if (prefix === "") {
    throw new UsageError(`Cannot start ${PROGRAM} as '--balancer-prefix' must not be empty`);
  }
  return { kind: "etcd", endpoints, security, prefix };
}
