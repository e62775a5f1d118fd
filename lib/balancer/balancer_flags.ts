/**
 * The balancer's flags: their table (types, help, defaults, shown by `--help` and read by
 * {@linkcode parseBalancerFlags}), and their parsing into a checked {@linkcode BalancerConfig}.
 * Every flag may also be set with its `LB_*` variable (`lib/runtime/flags.ts`).
 *
 * @module
 */
import { POLICY_NAMES } from "../../policies/mod.ts";
import { DEFAULT_BUILTIN_TTL_MS } from "./builtin_discovery.ts";
import { DEFAULT_WATCH_INTERVAL_MS } from "./watch_broadcast.ts";
import { balancerPrefixProblem, DEFAULT_BALANCER_PREFIX } from "../etcd/balancer_registry.ts";
import { ETCD_SECURITY_FLAGS, etcdSecurityFlags } from "../etcd/etcd_flags.ts";
import { DEFAULT_ETCD_PREFIX } from "../etcd/etcd_layout.ts";
import { DEFAULT_POLICY_KEY } from "../etcd/shared_policy.ts";
import {
  DEFAULT_HEALTH_INTERVAL_MS,
  DEFAULT_HEALTH_TIMEOUT_MS,
  DEFAULT_MAX_CHECKS_PER_S,
} from "../health/health_checker.ts";
import {
  etcdFlag,
  FlagReader,
  type FlagSpecs,
  HELP_FLAG,
  parseFlags,
  usage,
  UsageError,
} from "../runtime/flags.ts";
import type { BalancerOptions, DiscoveryConfig } from "./balancer_process.ts";
import { advertiseFlag } from "../wire/address.ts";
import { HTTP_HOST_FLAG, httpFlags } from "../ops/http_server.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogConfig, logFlags } from "../runtime/log.ts";
import { tokenFlag } from "../wire/auth.ts";
import { MAX_MESSAGE_FLAG, maxMessageFlag } from "../wire/grpc_server.ts";
import { tlsFlags } from "../wire/tls.ts";

const PROGRAM = "balancer";

/** Where the balancer learns which servers are live (`--discovery`). */
const DISCOVERY_KINDS = ["builtin", "etcd"] as const;

/** The balancer's flags. */
export const BALANCER_FLAGS = {
  host: {
    type: "string",
    arg: "HOST",
    help: "address to listen on (0.0.0.0 or :: for every interface)",
    default: "127.0.0.1",
  },
  advertise: {
    type: "string",
    arg: "HOST[:PORT]",
    help: "with etcd discovery: the name or address clients and backends dial to reach this " +
      "balancer, registered in etcd (default: --host; required when --host is 0.0.0.0 or ::)",
  },
  port: {
    type: "string",
    arg: "PORT",
    help: "port to listen on, 0 for any free port",
    default: 50051,
  },
  policy: { type: "string", arg: "NAME", help: POLICY_NAMES.join(" | "), default: "round_robin" },
  discovery: {
    type: "string",
    arg: "KIND",
    help: "builtin | etcd (default: etcd when --etcd is given, else builtin)",
  },
  etcd: { type: "string", arg: "URL[,URL]", help: "etcd endpoints, e.g. http://127.0.0.1:2379" },
  "etcd-prefix": {
    type: "string",
    arg: "PREFIX",
    help: "key prefix servers register under",
    default: DEFAULT_ETCD_PREFIX,
  },
  "balancer-prefix": {
    type: "string",
    arg: "PREFIX",
    help: "with etcd discovery: register this balancer as PREFIX<host:port> (leased), for " +
      "backends and clients to find every live balancer",
    default: DEFAULT_BALANCER_PREFIX,
  },
  "policy-key": {
    type: "string",
    arg: "KEY",
    help: "with etcd discovery: the key where the balancers share their policy (SetPolicy " +
      "writes it, every balancer follows it; once set, it wins over --policy)",
    default: DEFAULT_POLICY_KEY,
  },
  ...ETCD_SECURITY_FLAGS,
  "builtin-ttl-ms": {
    type: "string",
    arg: "MS",
    help: "builtin discovery: drop a server silent for this long",
    default: DEFAULT_BUILTIN_TTL_MS,
  },
  "watch-interval-ms": {
    type: "string",
    arg: "MS",
    help: "shortest time between two WatchServers updates",
    default: DEFAULT_WATCH_INTERVAL_MS,
  },
  "health-interval-ms": {
    type: "string",
    arg: "MS",
    help: "check each server's grpc.health.v1 this often, 0 for never",
    default: DEFAULT_HEALTH_INTERVAL_MS,
  },
  "health-timeout-ms": {
    type: "string",
    arg: "MS",
    help: "deadline of one health check; a server failing one is out of the picks until it " +
      "passes one",
    default: DEFAULT_HEALTH_TIMEOUT_MS,
  },
  "health-max-checks-per-s": {
    type: "string",
    arg: "N",
    help: "cap on health checks per second over all servers: past N × interval servers, each " +
      "is checked less often (a lost connection is still noticed at once)",
    default: DEFAULT_MAX_CHECKS_PER_S,
  },
  "token-file": {
    type: "string",
    arg: "PATH",
    help: "require the token in this file on ReportLoad, RegisterServer, SetPolicy and " +
      "ListServers (keep it under ./secrets)",
  },
  "protect-get-server": {
    type: "boolean",
    help: "with --token-file: require it on GetServer and WatchServers too",
  },
  "replica-unaware": {
    type: "boolean",
    help: "count each own pick once whatever the live balancers: the trap, only there to " +
      "measure it (bench --scenarios replicas)",
  },
  "tls-cert": {
    type: "string",
    arg: "PATH",
    help: "serve TLS with this certificate (PEM; with --tls-key)",
  },
  "tls-key": { type: "string", arg: "PATH", help: "the certificate's private key" },
  "tls-ca": {
    type: "string",
    arg: "PATH",
    help: "CA trusted for client certificates and the servers' (health checks)",
  },
  "tls-mutual": { type: "boolean", help: "require client certificates signed by --tls-ca" },
  "xds-service": {
    type: "string",
    arg: "NAME[=PREFIX],...",
    help: "serve these services over xDS (ADS, on the balancer's port): gRPC clients with an xDS " +
      "resolver target xds:///NAME with a bootstrap naming this balancer. NAME serves this " +
      "balancer's servers; NAME=PREFIX, with etcd discovery, those registered under PREFIX " +
      "(default: no xDS)",
  },
  "http-port": {
    type: "string",
    arg: "PORT",
    help: "serve the dashboard, /metrics and /health over HTTP on this port (0 for any free " +
      "port; default: no HTTP)",
  },
  ...HTTP_HOST_FLAG,
  ...MAX_MESSAGE_FLAG,
  ...logFlags("info"),
  ...HELP_FLAG,
} as const satisfies FlagSpecs;

/** The balancer's `--help`. */
export const BALANCER_USAGE = usage({
  command: "deno task balancer [flags]",
  about: "Serves load_balancer.LoadBalancer: keeps the live set of servers (from etcd, or " +
    "registered with it), checks their health, and names the server to use under its policy.",
  examples: [
    "deno task balancer --policy least_load",
    "deno task balancer --etcd http://127.0.0.1:2379 --log-format json",
    "LB_POLICY=least_load LB_ETCD=http://127.0.0.1:2379 deno task balancer",
    "deno task balancer --host 0.0.0.0 --advertise lb-1.example.internal --etcd http://etcd-1:2379",
  ],
}, BALANCER_FLAGS);

/** The balancer's flags, checked. */
export interface BalancerConfig {
  balancer: BalancerOptions;
  /** `--etcd`, for the net-access check (given with `--discovery builtin`, it is still checked). */
  etcd?: string[];
  log: LogConfig;
}

/**
 * Parses and checks the balancer's command line (and `LB_*` variables): `"help"` for `--help`,
 * else its config, with the files it names read. A bad flag throws a {@linkcode UsageError}
 * naming it.
 */
export function parseBalancerFlags(args: string[]): BalancerConfig | "help" {
  const flags = parseFlags(PROGRAM, args, BALANCER_FLAGS);
  if (flags.help) return "help";
  const read = new FlagReader(PROGRAM, BALANCER_FLAGS, flags);
  const etcd = etcdFlag(PROGRAM, flags.etcd);
  const kind = read.choice("discovery", DISCOVERY_KINDS) ?? (etcd ? "etcd" : "builtin");
  if (kind === "etcd" && !etcd) {
    throw new UsageError(`Cannot start ${PROGRAM} as '--discovery etcd' needs '--etcd URL'`);
  }
  const prefix = read.string("etcd-prefix");
  if (prefix === "") {
    throw new UsageError(`Cannot start ${PROGRAM} as '--etcd-prefix' must not be empty`);
  }
  const balancerPrefix = read.string("balancer-prefix");
  const problem = balancerPrefixProblem(balancerPrefix, prefix);
  if (problem) {
    throw new UsageError(`Cannot start ${PROGRAM} as '--balancer-prefix' ${problem}`);
  }
  const policyKey = read.string("policy-key");
  if (policyKey === "" || [prefix, balancerPrefix].some((p) => policyKey.startsWith(p))) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--policy-key' must not be empty nor under '${prefix}' or ` +
        `'${balancerPrefix}': got '${policyKey}'`,
    );
  }
  const security = etcdSecurityFlags(PROGRAM, flags, etcd);
  const discovery: DiscoveryConfig = kind === "etcd"
    ? { kind, endpoints: etcd!, prefix, security, balancerPrefix, policyKey }
    : { kind, ttlMs: read.int("builtin-ttl-ms", 100, 3_600_000) };
  if (read.boolean("protect-get-server") && flags["token-file"] === undefined) {
    throw new UsageError(`Cannot start ${PROGRAM} as '--protect-get-server' needs '--token-file'`);
  }
  const host = read.string("host");
  const balancer: BalancerOptions = {
    tls: tlsFlags(PROGRAM, flags, "server"),
    token: tokenFlag(PROGRAM, flags["token-file"]),
    maxMessageBytes: maxMessageFlag(PROGRAM, flags["max-message-bytes"]),
    http: httpFlags(PROGRAM, flags["http-port"], flags["http-host"]),
    protectGetServer: read.boolean("protect-get-server"),
    replicaUnaware: read.boolean("replica-unaware"),
    host,
    advertise: advertiseFlag(PROGRAM, flags.advertise, host, kind === "etcd"),
    port: read.int("port", 0, 65535),
    policy: read.choice("policy", POLICY_NAMES),
    discovery,
    watchIntervalMs: read.int("watch-interval-ms", 0, 60_000),
    xdsServices: xdsServicesFlag(flags["xds-service"], kind === "etcd"),
    healthCheck: {
      intervalMs: read.int("health-interval-ms", 0, 600_000),
      timeoutMs: read.int("health-timeout-ms", 1, 600_000),
      maxChecksPerS: read.int("health-max-checks-per-s", 1, 1_000_000),
    },
  };
  return {
    balancer,
    etcd,
    log: {
      level: read.choice("log-level", LOG_LEVELS),
      format: read.choice("log-format", LOG_FORMATS),
    },
  };
}

/** Characters of an xDS service name (a Listener's name: a DNS name, maybe with a port). */
const XDS_SERVICE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$/;

/** `--xds-service`: the services, checked; `undefined` when not given. */
function xdsServicesFlag(
  value: string | undefined,
  etcd: boolean,
): { name: string; prefix?: string }[] | undefined {
  if (value === undefined) return undefined;
  const services = value.split(",").map((entry) => {
    const [name, prefix] = entry.trim().split("=", 2) as [string, string | undefined];
    if (!XDS_SERVICE_PATTERN.test(name) || prefix === "") {
      throw new UsageError(
        `Cannot start ${PROGRAM} as '--xds-service' takes NAME or NAME=PREFIX, names of ` +
          `letters, digits and '.', '_', ':', '-', separated by commas: got '${value}'`,
      );
    }
    if (prefix !== undefined && !etcd) {
      throw new UsageError(
        `Cannot start ${PROGRAM} as '--xds-service ${name}=${prefix}' watches an etcd prefix, ` +
          `which needs etcd discovery ('--etcd URL')`,
      );
    }
    return prefix === undefined ? { name } : { name, prefix };
  });
  if (new Set(services.map((s) => s.name)).size !== services.length) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--xds-service' names a service twice: got '${value}'`,
    );
  }
  return services;
}
