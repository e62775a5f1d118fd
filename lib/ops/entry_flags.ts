/**
 * The flags of every entry (`balancer`, `backend`, `client`, `demo`, `bench`): their types,
 * help and defaults, in one table per entry. The entries parse them and print their `--help`
 * from them (`lib/ops/flags.ts`), `lib/harness/entry_process.ts` clears their environment variables for the
 * processes it starts, and `tests/help_test.ts` checks every one is in `--help`, so the three
 * cannot drift.
 *
 * @module
 */
import { POLICY_NAMES } from "../../policies/mod.ts";
import { SCENARIO_NAMES, type ScenarioName } from "../bench/bench_scenarios.ts";
import { DEFAULT_BALANCER_PREFIX } from "../etcd/balancer_registry.ts";
import { DEFAULT_BUILTIN_TTL_MS } from "../balancer/builtin_discovery.ts";
import { LOAD_SOURCES } from "../backend/cpu_meter.ts";
import { DEFAULT_WORK_UNITS } from "../backend/cpu_work.ts";
import { ETCD_SECURITY_FLAGS } from "../etcd/etcd_flags.ts";
import { DEFAULT_ETCD_PREFIX, DEFAULT_LEASE_TTL_S } from "../etcd/etcd_layout.ts";
import type { FlagSpecs } from "./flags.ts";
import {
  DEFAULT_HEALTH_INTERVAL_MS,
  DEFAULT_HEALTH_TIMEOUT_MS,
  DEFAULT_MAX_CHECKS_PER_S,
} from "../health/health_checker.ts";
import { DEFAULT_REPORT_INTERVAL_MS } from "../backend/load_reporter.ts";
import { LOG_FORMATS, LOG_LEVELS } from "./log.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../wire/grpc_server.ts";
import { DEFAULT_POLICY_KEY } from "../etcd/shared_policy.ts";
import { CLIENT_MODES, DEFAULT_MAX_ATTEMPTS } from "../client/task_client.ts";
import { DEFAULT_WATCH_INTERVAL_MS } from "../balancer/watch_broadcast.ts";

/** Seconds per scenario and target of `bench --quick`. */
export const QUICK_DURATION_S = 0.3;
/** With `bench --quick` (and no `--modes`), only these scenarios run the watch mode too. */
export const QUICK_WATCH_SCENARIOS: ScenarioName[] = ["simple"];

/** `--log-level` and `--log-format`, with an entry's default level. */
function logFlags(level: string) {
  return {
    "log-level": { type: "string", arg: "LEVEL", help: LOG_LEVELS.join(" | "), default: level },
    "log-format": {
      type: "string",
      arg: "FORMAT",
      help: `${LOG_FORMATS.join(" | ")}: text lines, or JSON Lines with every property a field`,
      default: "text",
    },
  } as const;
}

const HELP = { help: { type: "boolean", help: "show this text" } } as const;

/** `--max-message-bytes`. */
const MAX_MESSAGE = {
  "max-message-bytes": {
    type: "string",
    arg: "N",
    help: "largest request accepted; larger ones answer RESOURCE_EXHAUSTED",
    default: DEFAULT_MAX_MESSAGE_BYTES,
  },
} as const;

/** `--http-host` (the port's help differs between balancer and backend). */
const HTTP_HOST = {
  "http-host": {
    type: "string",
    arg: "HOST",
    help: "address of the HTTP side",
    default: "127.0.0.1",
  },
} as const;

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
  "http-port": {
    type: "string",
    arg: "PORT",
    help: "serve the dashboard, /metrics and /health over HTTP on this port (0 for any free " +
      "port; default: no HTTP)",
  },
  ...HTTP_HOST,
  ...MAX_MESSAGE,
  ...logFlags("info"),
  ...HELP,
} as const satisfies FlagSpecs;

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
  workers: { type: "string", arg: "N", help: "Web Workers for CPU-heavy tasks", default: 1 },
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
  ...HTTP_HOST,
  ...MAX_MESSAGE,
  ...logFlags("info"),
  ...HELP,
} as const satisfies FlagSpecs;

/** The client's flags. */
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
  concurrency: { type: "string", arg: "C", help: "tasks in flight at once", default: 1 },
  "client-id": {
    type: "string",
    arg: "ID",
    help: "sent with every GetServer",
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
  ...HELP,
} as const satisfies FlagSpecs;

/** The demo's flags. */
export const DEMO_FLAGS = {
  policies: {
    type: "string",
    arg: "LIST",
    help: `comma-separated, from ${POLICY_NAMES.join(", ")} (default all)`,
  },
  duration: { type: "string", arg: "S", help: "seconds of load per policy", default: 8 },
  concurrency: { type: "string", arg: "C", help: "tasks in flight", default: 6 },
  task: { type: "string", arg: "TYPE", help: "simple | cpu_heavy", default: "cpu_heavy" },
  backends: { type: "string", arg: "N", help: "number of backends", default: 3 },
  slowdown: {
    type: "string",
    arg: "F",
    help: "the last backend's slowdown; 1 makes them equal",
    default: 3,
  },
  discovery: {
    type: "string",
    arg: "KIND",
    help: "builtin | etcd (default: etcd when --etcd is given, else builtin); etcd starts a " +
      "throwaway etcd from the PATH unless --etcd is given",
  },
  etcd: { type: "string", arg: "URL", help: "an etcd to use for --discovery etcd" },
  "http-port": {
    type: "string",
    arg: "PORT",
    help: "port of the balancer's dashboard on 127.0.0.1 (default: any free port)",
  },
  ...logFlags("warning"),
  ...HELP,
} as const satisfies FlagSpecs;

/** The benchmark's flags. */
export const BENCH_FLAGS = {
  scenarios: {
    type: "string",
    arg: "LIST",
    help: `comma-separated, from ${SCENARIO_NAMES.join(", ")} (default all but scale)`,
  },
  policies: {
    type: "string",
    arg: "LIST",
    help: `comma-separated, from ${POLICY_NAMES.join(", ")} (default all)`,
  },
  modes: {
    type: "string",
    arg: "LIST",
    help: `client modes to run each policy in: ${CLIENT_MODES.join(", ")} (default both)`,
  },
  duration: {
    type: "string",
    arg: "S",
    help: "seconds of load per scenario and target",
    default: 20,
  },
  rounds: {
    type: "string",
    arg: "N",
    help: "split each target's duration into N runs, interleaved with the other targets', " +
      "where the servers are shared (--quick: 1)",
    default: 3,
  },
  concurrency: {
    type: "string",
    arg: "C",
    help: "tasks in flight (default: each scenario's own)",
  },
  clients: {
    type: "string",
    arg: "N",
    help: "load client processes sharing the concurrency",
    default: 1,
  },
  "work-units": {
    type: "string",
    arg: "N",
    help: "size of a CPU-heavy task",
    default: DEFAULT_WORK_UNITS,
  },
  "report-interval-ms": {
    type: "string",
    arg: "MS",
    help: "backends' load report period",
    default: DEFAULT_REPORT_INTERVAL_MS,
  },
  quick: {
    type: "boolean",
    help: `every scenario and policy, ${QUICK_DURATION_S} s each (watch mode in ` +
      `${QUICK_WATCH_SCENARIOS.join(", ")} only): checks that it all works`,
  },
  out: {
    type: "string",
    arg: "DIR",
    help: "output folder (default bench-results/<timestamp>); the task may write only under " +
      "bench-results/ and docs/bench/",
  },
  render: {
    type: "string",
    arg: "DIR",
    help: "write report.md and the charts again from DIR/results.json, and exit",
  },
  "http-port": {
    type: "string",
    arg: "PORT",
    help: "serve each scenario's balancer dashboard on this port of 127.0.0.1 while it runs",
  },
  ...logFlags("warning"),
  ...HELP,
} as const satisfies FlagSpecs;

/** Every entry's flags, by entry name. */
export const ENTRY_FLAGS = {
  balancer: BALANCER_FLAGS,
  backend: BACKEND_FLAGS,
  client: CLIENT_FLAGS,
  demo: DEMO_FLAGS,
  bench: BENCH_FLAGS,
} as const;
