/**
 * A backend server: `deno task backend --port 50052 [--balancer 127.0.0.1:50051] [--etcd URL]`.
 *
 * Flags in, objects built, started. The logic lives in `lib/backend/backend_process.ts`.
 *
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { Backend } from "./lib/backend/backend_process.ts";
import { balancerPrefixProblem, DEFAULT_BALANCER_PREFIX } from "./lib/etcd/balancer_registry.ts";
import { LOAD_SOURCES } from "./lib/backend/cpu_meter.ts";
import { DEFAULT_WORK_UNITS } from "./lib/backend/cpu_work.ts";
import { BACKEND_FLAGS } from "./lib/ops/entry_flags.ts";
import { DEFAULT_ETCD_PREFIX, DEFAULT_LEASE_TTL_S } from "./lib/etcd/etcd_layout.ts";
import { etcdSecurityFlags } from "./lib/etcd/etcd_flags.ts";
import {
  addressFlag,
  advertiseFlag,
  choiceFlag,
  etcdFlag,
  intFlag,
  numberFlag,
  onShutdownSignal,
  parseFlags,
  runMain,
  usage,
  UsageError,
} from "./lib/ops/flags.ts";
import { DEFAULT_REPORT_INTERVAL_MS } from "./lib/backend/load_reporter.ts";
import { LOG_FORMATS, LOG_LEVELS, setupLogging } from "./lib/ops/log.ts";
import { assertNetAccess, etcdUses, listenUses } from "./lib/wire/net_access.ts";
import { maxMessageFlag } from "./lib/wire/grpc_server.ts";
import { httpFlags } from "./lib/ops/http_server.ts";
import { tokenFlag } from "./lib/wire/auth.ts";
import { tlsFlags } from "./lib/wire/tls.ts";

const PROGRAM = "backend";
const USAGE = usage({
  command: "deno task backend --port PORT [flags]",
  about: "Serves load_balancer.Backend: runs SIMPLE and CPU_HEAVY tasks (the heavy ones on Web " +
    "Workers), registers in etcd or with the balancer, and reports its load to the balancer.",
  examples: [
    "deno task backend --port 50052 --balancer 127.0.0.1:50051",
    "deno task backend --port 50053 --etcd http://127.0.0.1:2379 --balancer 127.0.0.1:50051",
    "deno task backend --port 50055 --etcd http://127.0.0.1:2379",
    "LB_BALANCER=127.0.0.1:50051 LB_SLOWDOWN=4 deno task backend --port 50054",
    "deno task backend --host 0.0.0.0 --advertise backend-1.example.internal --port 50052 " +
    "--etcd http://etcd-1:2379",
  ],
}, BACKEND_FLAGS);

async function main(): Promise<void> {
  const flags = parseFlags(PROGRAM, Deno.args, BACKEND_FLAGS);
  if (flags.help) return console.log(USAGE);
  if (flags.port === undefined) {
    throw new UsageError(`Cannot start ${PROGRAM} as '--port' is required (e.g. --port 50052)`);
  }
  const etcd = etcdFlag(PROGRAM, flags.etcd);
  const balancer = addressFlag(PROGRAM, "balancer", flags.balancer);
  if (!etcd && !balancer) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as it needs '--etcd URL' or '--balancer HOST:PORT' to be found`,
    );
  }
  const prefix = flags["etcd-prefix"] ?? DEFAULT_ETCD_PREFIX;
  const balancerPrefix = flags["balancer-prefix"] ?? DEFAULT_BALANCER_PREFIX;
  const problem = balancerPrefixProblem(balancerPrefix, prefix);
  if (problem) throw new UsageError(`Cannot start ${PROGRAM} as '--balancer-prefix' ${problem}`);
  const host = flags.host ?? "127.0.0.1";
  const port = intFlag(PROGRAM, "port", flags.port, 0, 0, 65535);
  const http = httpFlags(PROGRAM, flags["http-port"], flags["http-host"]);
  await assertNetAccess(PROGRAM, [
    ...listenUses(host, port, http),
    ...(balancer ? [{ flag: `--balancer ${balancer}`, address: balancer }] : []),
    ...etcdUses(etcd),
  ]);
  const backend = new Backend({
    host,
    port,
    advertise: advertiseFlag(PROGRAM, flags.advertise, host, true),
    balancer,
    etcd: etcd
      ? {
        endpoints: etcd,
        prefix,
        ttlS: intFlag(PROGRAM, "lease-ttl", flags["lease-ttl"], DEFAULT_LEASE_TTL_S, 1, 3_600),
        security: etcdSecurityFlags(PROGRAM, flags, etcd),
        balancerPrefix,
      }
      : undefined,
    workers: intFlag(PROGRAM, "workers", flags.workers, 1, 1, 256),
    workUnits: numberFlag(
      PROGRAM,
      "work-units",
      flags["work-units"],
      DEFAULT_WORK_UNITS,
      0.001,
      100_000,
    ),
    slowdown: numberFlag(PROGRAM, "slowdown", flags.slowdown, 1, 0.01, 1_000),
    reportIntervalMs: intFlag(
      PROGRAM,
      "report-interval-ms",
      flags["report-interval-ms"],
      DEFAULT_REPORT_INTERVAL_MS,
      50,
      600_000,
    ),
    loadSource: choiceFlag(PROGRAM, "load-source", flags["load-source"], "process", LOAD_SOURCES),
    tls: tlsFlags(PROGRAM, flags, "server"),
    token: tokenFlag(PROGRAM, flags["token-file"]),
    maxMessageBytes: maxMessageFlag(PROGRAM, flags["max-message-bytes"]),
    http,
  });
  await setupLogging(
    choiceFlag(PROGRAM, "log-level", flags["log-level"], "info", LOG_LEVELS) as LogLevel,
    choiceFlag(PROGRAM, "log-format", flags["log-format"], "text", LOG_FORMATS),
  );
  onShutdownSignal(() => backend.stop());
  await backend.start();
}

if (import.meta.main) await runMain(main);
