/**
 * The load balancer: `deno task balancer [--policy least_load] [--etcd http://127.0.0.1:2379]`.
 *
 * Flags in, objects built, started. The logic lives in `lib/balancer/balancer_process.ts`.
 *
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { POLICY_NAMES } from "./policies/mod.ts";
import { Balancer, type DiscoveryConfig } from "./lib/balancer/balancer_process.ts";
import { balancerPrefixProblem, DEFAULT_BALANCER_PREFIX } from "./lib/etcd/balancer_registry.ts";
import { DEFAULT_POLICY_KEY } from "./lib/etcd/shared_policy.ts";
import { DEFAULT_BUILTIN_TTL_MS } from "./lib/balancer/builtin_discovery.ts";
import { BALANCER_FLAGS } from "./lib/ops/entry_flags.ts";
import { DEFAULT_ETCD_PREFIX } from "./lib/etcd/etcd_layout.ts";
import { etcdSecurityFlags } from "./lib/etcd/etcd_flags.ts";
import {
  advertiseFlag,
  choiceFlag,
  etcdFlag,
  intFlag,
  onShutdownSignal,
  parseFlags,
  runMain,
  usage,
  UsageError,
} from "./lib/ops/flags.ts";
import {
  DEFAULT_HEALTH_INTERVAL_MS,
  DEFAULT_HEALTH_TIMEOUT_MS,
  DEFAULT_MAX_CHECKS_PER_S,
} from "./lib/health/health_checker.ts";
import { LOG_FORMATS, LOG_LEVELS, setupLogging } from "./lib/ops/log.ts";
import { assertNetAccess, etcdUses, listenUses } from "./lib/wire/net_access.ts";
import { maxMessageFlag } from "./lib/wire/grpc_server.ts";
import { httpFlags } from "./lib/ops/http_server.ts";
import { tokenFlag } from "./lib/wire/auth.ts";
import { tlsFlags } from "./lib/wire/tls.ts";
import { DEFAULT_WATCH_INTERVAL_MS } from "./lib/balancer/watch_broadcast.ts";

const PROGRAM = "balancer";
const USAGE = usage({
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

async function main(): Promise<void> {
  const flags = parseFlags(PROGRAM, Deno.args, BALANCER_FLAGS);
  if (flags.help) return console.log(USAGE);
  const etcd = etcdFlag(PROGRAM, flags.etcd);
  const kind = choiceFlag(PROGRAM, "discovery", flags.discovery, etcd ? "etcd" : "builtin", [
    "builtin",
    "etcd",
  ]);
  if (kind === "etcd" && !etcd) {
    throw new UsageError(`Cannot start ${PROGRAM} as '--discovery etcd' needs '--etcd URL'`);
  }
  const prefix = flags["etcd-prefix"] ?? DEFAULT_ETCD_PREFIX;
  if (prefix === "") {
    throw new UsageError(`Cannot start ${PROGRAM} as '--etcd-prefix' must not be empty`);
  }
  const balancerPrefix = flags["balancer-prefix"] ?? DEFAULT_BALANCER_PREFIX;
  const problem = balancerPrefixProblem(balancerPrefix, prefix);
  if (problem) {
    throw new UsageError(`Cannot start ${PROGRAM} as '--balancer-prefix' ${problem}`);
  }
  const policyKey = flags["policy-key"] ?? DEFAULT_POLICY_KEY;
  if (policyKey === "" || [prefix, balancerPrefix].some((p) => policyKey.startsWith(p))) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--policy-key' must not be empty nor under '${prefix}' or ` +
        `'${balancerPrefix}': got '${policyKey}'`,
    );
  }
  const security = etcdSecurityFlags(PROGRAM, flags, etcd);
  const discovery: DiscoveryConfig = kind === "etcd"
    ? { kind, endpoints: etcd!, prefix, security, balancerPrefix, policyKey }
    : {
      kind,
      ttlMs: intFlag(
        PROGRAM,
        "builtin-ttl-ms",
        flags["builtin-ttl-ms"],
        DEFAULT_BUILTIN_TTL_MS,
        100,
        3_600_000,
      ),
    };
  if (flags["protect-get-server"] && flags["token-file"] === undefined) {
    throw new UsageError(`Cannot start ${PROGRAM} as '--protect-get-server' needs '--token-file'`);
  }
  const host = flags.host ?? "127.0.0.1";
  const options = {
    tls: tlsFlags(PROGRAM, flags, "server"),
    token: tokenFlag(PROGRAM, flags["token-file"]),
    maxMessageBytes: maxMessageFlag(PROGRAM, flags["max-message-bytes"]),
    http: httpFlags(PROGRAM, flags["http-port"], flags["http-host"]),
    protectGetServer: flags["protect-get-server"] ?? false,
    replicaUnaware: flags["replica-unaware"] ?? false,
    host,
    advertise: advertiseFlag(PROGRAM, flags.advertise, host, kind === "etcd"),
    port: intFlag(PROGRAM, "port", flags.port, 50051, 0, 65535),
    policy: choiceFlag(PROGRAM, "policy", flags.policy, "round_robin", POLICY_NAMES),
    discovery,
    watchIntervalMs: intFlag(
      PROGRAM,
      "watch-interval-ms",
      flags["watch-interval-ms"],
      DEFAULT_WATCH_INTERVAL_MS,
      0,
      60_000,
    ),
    healthCheck: {
      intervalMs: intFlag(
        PROGRAM,
        "health-interval-ms",
        flags["health-interval-ms"],
        DEFAULT_HEALTH_INTERVAL_MS,
        0,
        600_000,
      ),
      timeoutMs: intFlag(
        PROGRAM,
        "health-timeout-ms",
        flags["health-timeout-ms"],
        DEFAULT_HEALTH_TIMEOUT_MS,
        1,
        600_000,
      ),
      maxChecksPerS: intFlag(
        PROGRAM,
        "health-max-checks-per-s",
        flags["health-max-checks-per-s"],
        DEFAULT_MAX_CHECKS_PER_S,
        1,
        1_000_000,
      ),
    },
  };
  await assertNetAccess(PROGRAM, [
    ...listenUses(host, options.port, options.http),
    ...etcdUses(etcd),
  ]);
  await setupLogging(
    choiceFlag(PROGRAM, "log-level", flags["log-level"], "info", LOG_LEVELS) as LogLevel,
    choiceFlag(PROGRAM, "log-format", flags["log-format"], "text", LOG_FORMATS),
  );
  const balancer = new Balancer(options);
  onShutdownSignal(() => balancer.stop());
  await balancer.start();
}

if (import.meta.main) await runMain(main);
