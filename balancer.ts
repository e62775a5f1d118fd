/**
 * The load balancer: `deno task balancer [--policy least_load] [--etcd http://127.0.0.1:2379]`.
 *
 * Flags in, objects built, started. The logic lives in `lib/balancer.ts`.
 *
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { POLICY_NAMES } from "./policies/mod.ts";
import { Balancer, type DiscoveryConfig } from "./lib/balancer.ts";
import { DEFAULT_BUILTIN_TTL_MS } from "./lib/builtin_registry.ts";
import { DEFAULT_ETCD_PREFIX } from "./lib/etcd_layout.ts";
import { ETCD_SECURITY_FLAGS, etcdSecurityFlags, etcdSecurityUsage } from "./lib/etcd_flags.ts";
import {
  choiceFlag,
  etcdFlag,
  intFlag,
  onShutdownSignal,
  parseFlags,
  runMain,
  UsageError,
} from "./lib/flags.ts";
import { DEFAULT_HEALTH_INTERVAL_MS, DEFAULT_HEALTH_TIMEOUT_MS } from "./lib/health_checker.ts";
import { LOG_LEVELS, setupLogging } from "./lib/log.ts";
import { DEFAULT_MAX_MESSAGE_BYTES, maxMessageFlag } from "./lib/server.ts";
import { httpFlags } from "./lib/http_server.ts";
import { tokenFlag } from "./lib/auth.ts";
import { tlsFlags } from "./lib/tls.ts";
import { DEFAULT_WATCH_INTERVAL_MS } from "./lib/watch_hub.ts";

const PROGRAM = "balancer";
const USAGE = `Usage: deno task balancer [flags]

  --host HOST             address to listen on (default 127.0.0.1)
  --port PORT             port to listen on, 0 for any free port (default 50051)
  --policy NAME           ${POLICY_NAMES.join(" | ")} (default round_robin)
  --discovery KIND        builtin | etcd (default: etcd when --etcd is given, else builtin)
  --etcd URL[,URL]        etcd endpoints, e.g. http://127.0.0.1:2379
  --etcd-prefix PREFIX    key prefix servers register under (default ${DEFAULT_ETCD_PREFIX})
${etcdSecurityUsage(26)}
  --builtin-ttl-ms MS     builtin discovery: drop a server silent for this long (default ${DEFAULT_BUILTIN_TTL_MS})
  --watch-interval-ms MS  shortest time between two WatchServers updates (default ${DEFAULT_WATCH_INTERVAL_MS})
  --health-interval-ms MS check each server's grpc.health.v1 this often, 0 for never (default ${DEFAULT_HEALTH_INTERVAL_MS})
  --health-timeout-ms MS  deadline of one health check; a server failing one is out of the
                          picks until it passes one (default ${DEFAULT_HEALTH_TIMEOUT_MS})
  --token-file PATH       require the token in this file on ReportLoad, RegisterServer,
                          SetPolicy and ListServers (keep it under ./secrets)
  --protect-get-server    with --token-file: require it on GetServer and WatchServers too
  --tls-cert PATH         serve TLS with this certificate (PEM; with --tls-key)
  --tls-key PATH          the certificate's private key
  --tls-ca PATH           CA trusted for client certificates and the servers' (health checks)
  --tls-mutual            require client certificates signed by --tls-ca
  --http-port PORT        serve the dashboard, /metrics and /health over HTTP on this port
                          (0 for any free port; default: no HTTP)
  --http-host HOST        address of the HTTP side (default 127.0.0.1)
  --max-message-bytes N   largest request accepted; larger ones answer RESOURCE_EXHAUSTED
                          (default ${DEFAULT_MAX_MESSAGE_BYTES})
  --log-level LEVEL       ${LOG_LEVELS.join(" | ")} (default info)
  --help                  show this text`;

async function main(): Promise<void> {
  const flags = parseFlags(PROGRAM, Deno.args, {
    host: { type: "string" },
    port: { type: "string" },
    policy: { type: "string" },
    discovery: { type: "string" },
    etcd: { type: "string" },
    "etcd-prefix": { type: "string" },
    ...ETCD_SECURITY_FLAGS,
    "builtin-ttl-ms": { type: "string" },
    "watch-interval-ms": { type: "string" },
    "health-interval-ms": { type: "string" },
    "health-timeout-ms": { type: "string" },
    "token-file": { type: "string" },
    "protect-get-server": { type: "boolean" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    "tls-ca": { type: "string" },
    "tls-mutual": { type: "boolean" },
    "http-port": { type: "string" },
    "http-host": { type: "string" },
    "max-message-bytes": { type: "string" },
    "log-level": { type: "string" },
    help: { type: "boolean" },
  });
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
  const security = etcdSecurityFlags(PROGRAM, flags, etcd);
  const discovery: DiscoveryConfig = kind === "etcd"
    ? { kind, endpoints: etcd!, prefix, security }
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
  const options = {
    tls: tlsFlags(PROGRAM, flags, "server"),
    token: tokenFlag(PROGRAM, flags["token-file"]),
    maxMessageBytes: maxMessageFlag(PROGRAM, flags["max-message-bytes"]),
    http: httpFlags(PROGRAM, flags["http-port"], flags["http-host"]),
    protectGetServer: flags["protect-get-server"] ?? false,
    host: flags.host ?? "127.0.0.1",
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
    },
  };
  await setupLogging(
    choiceFlag(PROGRAM, "log-level", flags["log-level"], "info", LOG_LEVELS) as LogLevel,
  );
  const balancer = new Balancer(options);
  onShutdownSignal(() => balancer.stop());
  await balancer.start();
}

if (import.meta.main) await runMain(main);
