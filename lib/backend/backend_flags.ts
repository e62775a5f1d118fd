/**
 * The backend's flags: their table (types, help, defaults, shown by `--help` and read by
 * {@linkcode parseBackendFlags}), and their parsing into a checked {@linkcode BackendConfig}.
 * Every flag may also be set with its `LB_*` variable (`lib/runtime/flags.ts`).
 *
 * @module
 */
import {
  CAPACITY_SCHEDULE_FORM,
  type CapacitySchedule,
  constantCapacity,
  parseCapacitySchedule,
} from "./capacity_schedule.ts";
import { LOAD_SOURCES } from "./cpu_meter.ts";
import { DEFAULT_WORK_UNITS } from "./cpu_work.ts";
import { DEFAULT_REPORT_INTERVAL_MS } from "./load_reporter.ts";
import { balancerPrefixProblem, DEFAULT_BALANCER_PREFIX } from "../etcd/balancer_registry.ts";
import { ETCD_SECURITY_FLAGS, etcdSecurityFlags } from "../etcd/etcd_flags.ts";
import { DEFAULT_ETCD_PREFIX, DEFAULT_LEASE_TTL_S } from "../etcd/etcd_layout.ts";
import {
  etcdFlag,
  FlagReader,
  type FlagSpecs,
  HELP_FLAG,
  parseFlags,
  usage,
  UsageError,
} from "../runtime/flags.ts";
import type { BackendOptions } from "./backend_process.ts";
import { parseServiceTime, SERVICE_TIME_FORMS } from "./service_time.ts";
import { addressFlag, advertiseFlag } from "../wire/address.ts";
import { HTTP_HOST_FLAG, httpFlags } from "../ops/http_server.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogConfig, logFlags } from "../runtime/log.ts";
import { tokenFlag } from "../wire/auth.ts";
import { MAX_MESSAGE_FLAG, maxMessageFlag } from "../wire/grpc_server.ts";
import { tlsFlags } from "../wire/tls.ts";

const PROGRAM = "backend";

/** The backend's flags. */
export const BACKEND_FLAGS = {
  port: { type: "string", arg: "PORT", help: "port to serve on (required; 0 for any free port)" },
  host: {
    type: "string",
    arg: "HOST",
    help: "address to serve on (0.0.0.0 or :: for every interface)",
    default: "127.0.0.1",
  },
  advertise: {
    type: "string",
    arg: "HOST[:PORT]",
    help: "the name or address the balancer and clients dial to reach this backend, as " +
      "registered (default: --host; required when --host is 0.0.0.0 or ::)",
  },
  balancer: {
    type: "string",
    arg: "HOST:PORT",
    help: "balancer to report load to (and register with, without --etcd); with --etcd and " +
      "no --balancer, it reports to every balancer registered in etcd",
  },
  etcd: { type: "string", arg: "URL[,URL]", help: "register in etcd, e.g. http://127.0.0.1:2379" },
  "etcd-prefix": {
    type: "string",
    arg: "PREFIX",
    help: "key prefix",
    default: DEFAULT_ETCD_PREFIX,
  },
  "balancer-prefix": {
    type: "string",
    arg: "PREFIX",
    help: "with --etcd and no --balancer: report load to every balancer registered under it, " +
      "following joins and leaves",
    default: DEFAULT_BALANCER_PREFIX,
  },
  ...ETCD_SECURITY_FLAGS,
  "lease-ttl": {
    type: "string",
    arg: "S",
    help: "etcd lease TTL in seconds",
    default: DEFAULT_LEASE_TTL_S,
  },
  workers: {
    type: "string",
    arg: "N",
    help: "Web Workers for CPU-heavy tasks (with --service-time: slots)",
    default: 1,
  },
  "work-units": {
    type: "string",
    arg: "N",
    help: "size of a CPU-heavy task (1 unit = 1e6 loop rounds)",
    default: DEFAULT_WORK_UNITS,
  },
  slowdown: {
    type: "string",
    arg: "F",
    help: "multiplies the heavy work, to emulate a slower server",
    default: 1,
  },
  "service-time": {
    type: "string",
    arg: "DIST",
    help: "emulate CPU_HEAVY tasks, a benchmark and demo device: each holds one of --workers " +
      "slots for a time drawn from DIST, waiting in a queue for a free one, and burns no CPU " +
      `(${SERVICE_TIME_FORMS}); SIMPLE tasks stay instant, --work-units does not apply, and ` +
      "the load reported is the busy slots",
  },
  capacity: {
    type: "string",
    arg: "F",
    help: "with --service-time: this server's speed, above 0 and at most 1; drawn times are " +
      "divided by it",
    default: 1,
  },
  "capacity-schedule": {
    type: "string",
    arg: "SPEC",
    help: "with --service-time, in place of --capacity: capacity over time since start, " +
      `${CAPACITY_SCHEDULE_FORM} (a noisy neighbour from 20 to 40 s)`,
  },
  "report-interval-ms": {
    type: "string",
    arg: "MS",
    help: "load report period",
    default: DEFAULT_REPORT_INTERVAL_MS,
  },
  "load-source": {
    type: "string",
    arg: "SOURCE",
    help: LOAD_SOURCES.join(" | "),
    default: "process",
  },
  "token-file": {
    type: "string",
    arg: "PATH",
    help: "send the balancer's token in this file with reports and registration",
  },
  "tls-cert": {
    type: "string",
    arg: "PATH",
    help: "serve TLS with this certificate (PEM; with --tls-key), and show it to a " +
      "--tls-mutual balancer",
  },
  "tls-key": { type: "string", arg: "PATH", help: "the certificate's private key" },
  "tls-ca": {
    type: "string",
    arg: "PATH",
    help: "CA trusted for the balancer's certificate and client certificates",
  },
  "tls-mutual": { type: "boolean", help: "require client certificates signed by --tls-ca" },
  "http-port": {
    type: "string",
    arg: "PORT",
    help: "serve /metrics and /health over HTTP on this port (0 for any free port; default: " +
      "no HTTP)",
  },
  ...HTTP_HOST_FLAG,
  ...MAX_MESSAGE_FLAG,
  ...logFlags("info"),
  ...HELP_FLAG,
} as const satisfies FlagSpecs;

/** The backend's `--help`. */
export const BACKEND_USAGE = usage({
  command: "deno task backend --port PORT [flags]",
  about: "Serves load_balancer.Backend: runs SIMPLE and CPU_HEAVY tasks (the heavy ones on Web " +
    "Workers), registers in etcd or with the balancer, and reports its load to the balancer.",
  examples: [
    "deno task backend --port 50052 --balancer 127.0.0.1:50051",
    "deno task backend --port 50053 --etcd http://127.0.0.1:2379 --balancer 127.0.0.1:50051",
    "deno task backend --port 50055 --etcd http://127.0.0.1:2379",
    "LB_BALANCER=127.0.0.1:50051 LB_SLOWDOWN=4 deno task backend --port 50054",
    "deno task backend --port 50056 --balancer 127.0.0.1:50051 --workers 4 " +
    "--service-time exp:20ms --capacity 0.25",
    "deno task backend --host 0.0.0.0 --advertise backend-1.example.internal --port 50052 " +
    "--etcd http://etcd-1:2379",
  ],
}, BACKEND_FLAGS);

/** The backend's flags, checked. */
export interface BackendConfig {
  backend: BackendOptions;
  log: LogConfig;
}

/**
 * Parses and checks the backend's command line (and `LB_*` variables): `"help"` for `--help`,
 * else its config, with the files it names read. A bad flag throws a {@linkcode UsageError}
 * naming it.
 */
export function parseBackendFlags(args: string[]): BackendConfig | "help" {
  const flags = parseFlags(PROGRAM, args, BACKEND_FLAGS);
  if (flags.help) return "help";
  const read = new FlagReader(PROGRAM, BACKEND_FLAGS, flags);
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
  const prefix = read.string("etcd-prefix");
  const balancerPrefix = read.string("balancer-prefix");
  const problem = balancerPrefixProblem(balancerPrefix, prefix);
  if (problem) throw new UsageError(`Cannot start ${PROGRAM} as '--balancer-prefix' ${problem}`);
  const host = read.string("host");
  const port = read.int("port", 0, 65535)!;
  const http = httpFlags(PROGRAM, flags["http-port"], flags["http-host"]);
  return {
    backend: {
      host,
      port,
      advertise: advertiseFlag(PROGRAM, flags.advertise, host, true),
      balancer,
      etcd: etcd
        ? {
          endpoints: etcd,
          prefix,
          ttlS: read.int("lease-ttl", 1, 3_600),
          // Only with --etcd: without it, these flags are not read.
          security: etcdSecurityFlags(PROGRAM, flags, etcd),
          balancerPrefix,
        }
        : undefined,
      workers: read.int("workers", 1, 256),
      emulation: emulationFlags(flags),
      workUnits: read.number("work-units", 0.001, 100_000),
      slowdown: read.number("slowdown", 0.01, 1_000),
      reportIntervalMs: read.int("report-interval-ms", 50, 600_000),
      loadSource: read.choice("load-source", LOAD_SOURCES),
      tls: tlsFlags(PROGRAM, flags, "server"),
      token: tokenFlag(PROGRAM, flags["token-file"]),
      maxMessageBytes: maxMessageFlag(PROGRAM, flags["max-message-bytes"]),
      http,
    },
    log: {
      level: read.choice("log-level", LOG_LEVELS),
      format: read.choice("log-format", LOG_FORMATS),
    },
  };
}

/** The flags of emulated tasks (`--service-time` and what goes with it), checked. */
function emulationFlags(
  flags: ReturnType<typeof parseFlags<typeof BACKEND_FLAGS>>,
): BackendOptions["emulation"] {
  const text = flags["service-time"];
  const schedule = flags["capacity-schedule"];
  if (text === undefined) {
    for (const flag of ["capacity", "capacity-schedule"] as const) {
      if (flags[flag] !== undefined) {
        throw new UsageError(`Cannot start ${PROGRAM} as '--${flag}' needs '--service-time DIST'`);
      }
    }
    return undefined;
  }
  for (
    const [flag, why] of [["slowdown", "use '--capacity'"], [
      "load-source",
      "its load is its busy slots",
    ]] as const
  ) {
    if (flags[flag] !== undefined) {
      throw new UsageError(
        `Cannot start ${PROGRAM} as '--${flag}' and '--service-time' exclude each other (${why})`,
      );
    }
  }
  if (flags.capacity !== undefined && schedule !== undefined) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--capacity' and '--capacity-schedule' exclude each other`,
    );
  }
  const serviceTime = parsed("service-time", () => parseServiceTime(text));
  let capacity: CapacitySchedule;
  if (schedule !== undefined) {
    capacity = parsed("capacity-schedule", () => parseCapacitySchedule(schedule));
  } else {
    const value = flags.capacity ?? String(BACKEND_FLAGS.capacity.default);
    const f = Number(value);
    if (value.trim() === "" || !(f > 0 && f <= 1)) {
      throw new UsageError(
        `Cannot start ${PROGRAM} as '--capacity' must be a number above 0 and at most 1: ` +
          `current value is '${value}'`,
      );
    }
    capacity = constantCapacity(f);
  }
  return { serviceTime, capacity };
}

/** `parse()`'s value; its `RangeError` (which says what is accepted) as a usage error of `flag`. */
function parsed<T>(flag: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    throw new UsageError(`Cannot start ${PROGRAM} as '--${flag}' is invalid: ${error.message}`, {
      cause: error,
    });
  }
}
