/**
 * Runs our entries (`balancer.ts`, `backend.ts`, `client.ts`) as child processes with the same
 * permission flags as their `deno task`, for the demo, the benchmark and the integration tests.
 *
 * The flags live here once; `tests/deno_json_test.ts` checks that deno.json's tasks use the
 * same ones, so the two cannot drift.
 *
 * @module
 */

import { BACKEND_FLAGS } from "../backend/backend_flags.ts";
import { BALANCER_FLAGS } from "../balancer/balancer_flags.ts";
import { BENCH_FLAGS } from "../bench/bench_flags.ts";
import { CLIENT_FLAGS } from "../client/client_flags.ts";
import { DEMO_FLAGS } from "./demo_flags.ts";
import { SIM_FLAGS } from "../sim/sim_flags.ts";
import { envFlags, envName, type FlagSpecs } from "../runtime/flags.ts";

/** Environment variables grpc-js and our entries (`LB_*`, their flags) read. */
export const ENV_ALLOW = "GRPC_*,LB_*,grpc_proxy,http_proxy,https_proxy,no_proxy,no_grpc_proxy";

/**
 * V8's young generation capped at 8 MiB a semi-space (16 by default): the startup burst at 1,000
 * servers grows it to the cap, which V8 then keeps while the balancer works. The measurements are
 * in docs/DEVELOPING.md ("V8's young generation").
 */
export const BALANCER_V8_FLAGS = "--v8-flags=--max-semi-space-size=8";

/**
 * `deno run` flags of each entry (as in deno.json's tasks): its permissions, and the balancer's
 * {@linkcode BALANCER_V8_FLAGS}.
 *
 * Balancer, backend and client may reach any host (`--allow-net`): a deployment's etcd, backends,
 * balancers and clients are on hosts and names only its configuration knows, and the balancer
 * dials whatever servers register in etcd. An operator narrows it by running `deno run` with
 * `--allow-net=<their hosts>` (docs/operations.md, "Deploying across hosts"); each entry then checks at start
 * that its configured addresses are covered (`lib/wire/net_access.ts`). Read, env and sys stay narrow:
 * they may read `secrets/` (gitignored), where token files and TLS keys go, and `node_modules`,
 * where the etcd3 package reads its `.proto` files. The demo and the benchmark run everything on
 * loopback, so they keep `--allow-net=127.0.0.1`.
 *
 * The balancer does not run with V8's `--optimize-for-size`: it saves memory but costs peak
 * `GetServer` throughput (docs/DEVELOPING.md, "V8's young generation").
 */
export const ENTRY_PERMISSIONS = {
  balancer: [
    BALANCER_V8_FLAGS,
    "--allow-net",
    "--allow-read=node_modules,secrets",
    `--allow-env=${ENV_ALLOW}`,
  ],
  backend: [
    "--allow-net",
    "--allow-read=node_modules,secrets",
    "--allow-sys=loadavg",
    `--allow-env=${ENV_ALLOW}`,
  ],
  client: [
    "--allow-net",
    "--allow-read=node_modules,secrets",
    `--allow-env=${ENV_ALLOW}`,
  ],
  demo: [
    "--allow-net=127.0.0.1",
    "--allow-read=node_modules,.demo-etcd",
    "--allow-write=.demo-etcd",
    "--allow-run",
    `--allow-env=${ENV_ALLOW}`,
  ],
  bench: [
    "--allow-net=127.0.0.1",
    "--allow-read=node_modules,.bench-etcd,bench-results,docs/bench",
    "--allow-write=.bench-etcd,bench-results,docs/bench",
    "--allow-run",
    "--allow-sys=osRelease,systemMemoryInfo",
    `--allow-env=${ENV_ALLOW}`,
  ],
  simulate: ["--allow-env=LB_*"],
} as const;

/** An entry that can be started. */
export type EntryName = keyof typeof ENTRY_PERMISSIONS;

/**
 * Every entry's flags, by entry name: the tables its `--help` shows and its parsing reads, each
 * beside what it configures.
 */
export const ENTRY_FLAGS = {
  balancer: BALANCER_FLAGS,
  backend: BACKEND_FLAGS,
  client: CLIENT_FLAGS,
  demo: DEMO_FLAGS,
  bench: BENCH_FLAGS,
  simulate: SIM_FLAGS,
} as const satisfies Record<EntryName, FlagSpecs>;

/** Project root (where deno.json is). */
export const PROJECT_ROOT = new URL("../../", import.meta.url);

/** A started entry. */
export interface EntryProcess {
  readonly name: string;
  readonly pid: number;
  /** Resolves when the process exits. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Whether the process has exited. */
  readonly exited: boolean;
  /** Sends a signal (ignored once exited). */
  signal(signal: Deno.Signal): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<Deno.CommandStatus>;
  /** The last lines it wrote to stderr (its log), for error messages. */
  log(): string;
  /** Everything it wrote to stdout so far (only with `stdout: "piped"`). */
  stdout(): string;
}

/** Options of {@linkcode spawnEntry}. */
export interface SpawnEntryOptions {
  /** A label for logs and errors. @default {entry} */
  name?: string;
  /** Run a different script (e.g. a bundle) with the entry's permissions. */
  script?: string;
  /** Keep stdout (for `client --json`). @default {false} */
  captureStdout?: boolean;
  /** Lines of stderr kept for {@linkcode EntryProcess.log}. @default {200} */
  keepLines?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory. @default {PROJECT_ROOT} */
  cwd?: string | URL;
  /**
   * Run it in this Linux network namespace (`ip netns exec`, which also puts the namespace's
   * `/etc/netns/<name>/hosts` in place of `/etc/hosts`): a host of the tests' data centre.
   */
  netns?: string;
}

/**
 * The environment variables of `entry`'s flags, set empty (which counts as unset): a started
 * entry is configured by the flags it is given alone, not by `LB_*` variables of whoever
 * started the demo, the benchmark or the tests.
 */
function clearedFlagEnv(entry: EntryName): Record<string, string> {
  return Object.fromEntries(envFlags(ENTRY_FLAGS[entry]).map((flag) => [envName(flag), ""]));
}

/**
 * Starts `deno run <permissions> <entry>.ts <args>` in the project root, with the `LB_*`
 * variables of its flags cleared (`options.env` may set them).
 */
export function spawnEntry(
  entry: EntryName,
  args: string[],
  options: SpawnEntryOptions = {},
): EntryProcess {
  const script = options.script ?? `${entry}.ts`;
  const command = [Deno.execPath(), "run", "--quiet", ...ENTRY_PERMISSIONS[entry], script, ...args];
  if (options.netns !== undefined) command.unshift("ip", "netns", "exec", options.netns);
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    cwd: options.cwd ?? PROJECT_ROOT,
    stdin: "null",
    stdout: options.captureStdout ? "piped" : "null",
    stderr: "piped",
    env: { NO_COLOR: "1", ...clearedFlagEnv(entry), ...options.env },
  }).spawn();
  const keep = options.keepLines ?? 200;
  const lines: string[] = [];
  let out = "";
  const drain = async (stream: ReadableStream<Uint8Array>, onText: (text: string) => void) => {
    const decoder = new TextDecoderStream();
    for await (const text of stream.pipeThrough(decoder)) onText(text);
  };
  const stderrDone = drain(child.stderr, (text) => {
    lines.push(...text.split("\n").filter((l) => l !== ""));
    if (lines.length > keep) lines.splice(0, lines.length - keep);
  });
  const stdoutDone = options.captureStdout
    ? drain(child.stdout, (text) => out += text)
    : Promise.resolve();
  let exited = false;
  const status = child.status.then(async (s) => {
    exited = true;
    await Promise.allSettled([stderrDone, stdoutDone]);
    return s;
  });
  const signal = (sig: Deno.Signal) => {
    if (exited) return;
    try {
      child.kill(sig);
    } catch {
      // It exited between the check and the kill.
    }
  };
  return {
    name: options.name ?? entry,
    pid: child.pid,
    status,
    get exited() {
      return exited;
    },
    signal,
    async stop(graceMs = 10_000) {
      signal("SIGTERM");
      const timer = setTimeout(() => signal("SIGKILL"), graceMs);
      try {
        return await status;
      } finally {
        clearTimeout(timer);
      }
    },
    log: () => lines.join("\n"),
    stdout: () => out,
  };
}
