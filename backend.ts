/**
 * A backend server: `deno task backend --port 50052 [--balancer 127.0.0.1:50051] [--etcd URL]`.
 *
 * Flags in, objects built, started. The logic lives in `lib/backend.ts`.
 *
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { Backend } from "./lib/backend.ts";
import { LOAD_SOURCES } from "./lib/cpu_meter.ts";
import { DEFAULT_WORK_UNITS } from "./lib/cpu_work.ts";
import { DEFAULT_ETCD_PREFIX, DEFAULT_LEASE_TTL_S } from "./lib/etcd_layout.ts";
import { ETCD_SECURITY_FLAGS, etcdSecurityFlags, etcdSecurityUsage } from "./lib/etcd_flags.ts";
import {
  addressFlag,
  choiceFlag,
  etcdFlag,
  intFlag,
  numberFlag,
  onShutdownSignal,
  parseFlags,
  runMain,
  UsageError,
} from "./lib/flags.ts";
import { DEFAULT_REPORT_INTERVAL_MS } from "./lib/load_reporter.ts";
import { LOG_LEVELS, setupLogging } from "./lib/log.ts";
import { DEFAULT_MAX_MESSAGE_BYTES, maxMessageFlag } from "./lib/server.ts";
import { httpFlags } from "./lib/http_server.ts";
import { tokenFlag } from "./lib/auth.ts";
import { tlsFlags } from "./lib/tls.ts";

const PROGRAM = "backend";
const USAGE = `Usage: deno task backend --port PORT [flags]

  --port PORT               port to serve on (required; 0 for any free port)
  --host HOST               address to serve on and advertise (default 127.0.0.1)
  --balancer HOST:PORT      balancer to report load to (and register with, without --etcd)
  --etcd URL[,URL]          register in etcd, e.g. http://127.0.0.1:2379
  --etcd-prefix PREFIX      key prefix (default ${DEFAULT_ETCD_PREFIX})
${etcdSecurityUsage(28)}
  --lease-ttl S             etcd lease TTL in seconds (default ${DEFAULT_LEASE_TTL_S})
  --workers N               Web Workers for CPU-heavy tasks (default 1)
  --work-units N            size of a CPU-heavy task (default ${DEFAULT_WORK_UNITS}; 1 unit = 1e6 loop rounds)
  --slowdown F              multiplies the heavy work, to emulate a slower server (default 1)
  --report-interval-ms MS   load report period (default ${DEFAULT_REPORT_INTERVAL_MS})
  --load-source SOURCE      ${LOAD_SOURCES.join(" | ")} (default process)
  --token-file PATH         send the balancer's token in this file with reports and registration
  --tls-cert PATH           serve TLS with this certificate (PEM; with --tls-key), and show it
                            to a --tls-mutual balancer
  --tls-key PATH            the certificate's private key
  --tls-ca PATH             CA trusted for the balancer's certificate and client certificates
  --tls-mutual              require client certificates signed by --tls-ca
  --http-port PORT          serve /metrics and /health over HTTP on this port (0 for any
                            free port; default: no HTTP)
  --http-host HOST          address of the HTTP side (default 127.0.0.1)
  --max-message-bytes N     largest request accepted; larger ones answer RESOURCE_EXHAUSTED
                            (default ${DEFAULT_MAX_MESSAGE_BYTES})
  --log-level LEVEL         ${LOG_LEVELS.join(" | ")} (default info)
  --help                    show this text`;

async function main(): Promise<void> {
  const flags = parseFlags(PROGRAM, Deno.args, {
    port: { type: "string" },
    host: { type: "string" },
    balancer: { type: "string" },
    etcd: { type: "string" },
    "etcd-prefix": { type: "string" },
    ...ETCD_SECURITY_FLAGS,
    "lease-ttl": { type: "string" },
    workers: { type: "string" },
    "work-units": { type: "string" },
    slowdown: { type: "string" },
    "report-interval-ms": { type: "string" },
    "load-source": { type: "string" },
    "token-file": { type: "string" },
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
  const backend = new Backend({
    host: flags.host ?? "127.0.0.1",
    port: intFlag(PROGRAM, "port", flags.port, 0, 0, 65535),
    balancer,
    etcd: etcd
      ? {
        endpoints: etcd,
        prefix,
        ttlS: intFlag(PROGRAM, "lease-ttl", flags["lease-ttl"], DEFAULT_LEASE_TTL_S, 1, 3_600),
        security: etcdSecurityFlags(PROGRAM, flags, etcd),
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
    http: httpFlags(PROGRAM, flags["http-port"], flags["http-host"]),
  });
  await setupLogging(
    choiceFlag(PROGRAM, "log-level", flags["log-level"], "info", LOG_LEVELS) as LogLevel,
  );
  onShutdownSignal(() => backend.stop());
  await backend.start();
}

if (import.meta.main) await runMain(main);
