/**
 * Stock xDS clients for the xDS tests, each its own process: `@grpc/grpc-js-xds` under Deno
 * (`_xds_client.ts`) and gRPC C-core from Debian's python3-grpcio (`_xds_client.py`). Each is
 * given a bootstrap naming the balancer, calls `xds:///<service>` and prints what each server
 * answered every 100 ms; this module keeps those lines, stamped with the test's clock.
 *
 * @module
 */
import { PROJECT_ROOT } from "../lib/harness/entry_process.ts";

/** The two clients. */
export type XdsClientKind = "grpc-js" | "c-core";
export const XDS_CLIENT_KINDS: readonly XdsClientKind[] = ["grpc-js", "c-core"];

/** 100 ms of a client's calls, as it printed them. */
export interface Bucket {
  /** When the test read the line (`performance.now()`): the end of the 100 ms. */
  atMs: number;
  servers: Record<string, number>;
  failed: Record<string, number>;
  /** Calls the client retried itself (cut after their server answered). */
  retried: number;
}

/** A running xDS client process. */
export interface XdsClient {
  kind: XdsClientKind;
  /** Its xDS node id. */
  node: string;
  readonly buckets: readonly Bucket[];
  /** Calls `address` answered, over the whole run. */
  served(address: string): number;
  /** Failed calls by status name, over the whole run. */
  failed(): Record<string, number>;
  /** What the client wrote to stderr so far (the first failure of each code, with its details). */
  log(): string;
  /** Calls the client retried itself, over the whole run. */
  retried(): number;
  /** End of the first 100 ms with a call answered by `address` after `afterMs`. */
  firstCallTo(address: string, afterMs?: number): number | undefined;
  /** End of the last 100 ms with a call answered by `address`. */
  lastCallTo(address: string): number | undefined;
  /** Closes its stdin and waits for it to print its last line and exit; throws with its log if it fails. */
  stop(): Promise<void>;
}

/** Python with Debian's grpcio (not a pyenv or virtualenv one that lacks it). */
const PYTHON = "/usr/bin/python3";

/** The gRPC xDS bootstrap (gRFC A27) naming `server` as the only management server. */
export function bootstrap(server: string, node: string): string {
  return JSON.stringify({
    xds_servers: [{
      server_uri: server,
      channel_creds: [{ type: "insecure" }],
      server_features: ["xds_v3"],
    }],
    node: { id: node, locality: {} },
  });
}

/**
 * Starts a `kind` client of `xds:///<service>` with `management` as its xDS server,
 * `concurrency` calls of `taskType` at a time (4 `SIMPLE` ones by default); `header`
 * (`name=value`) goes with each call; `env` adds to its environment.
 */
export function startXdsClient(
  kind: XdsClientKind,
  management: string,
  service: string,
  options: {
    concurrency?: number;
    taskType?: "SIMPLE" | "CPU_HEAVY";
    header?: string;
    env?: Record<string, string>;
  } = {},
): XdsClient {
  const node = `${kind}-${Math.random().toString(36).slice(2, 8)}`;
  const args = [
    service,
    String(options.concurrency ?? 4),
    options.taskType ?? "SIMPLE",
    ...options.header ? [options.header] : [],
  ];
  const child = new Deno.Command(
    kind === "c-core" ? PYTHON : Deno.execPath(),
    {
      args: kind === "c-core" ? ["tests/_xds_client.py", ...args] : [
        "run",
        "--allow-net=127.0.0.1",
        "--allow-read",
        "--allow-env",
        // Node's fs.accessSync, with which @grpc/proto-loader finds its files, asks for the uid.
        "--allow-sys=uid",
        "tests/_xds_client.ts",
        ...args,
      ],
      cwd: PROJECT_ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: {
        GRPC_XDS_BOOTSTRAP_CONFIG: bootstrap(management, node),
        NO_COLOR: "1",
        ...options.env,
      },
    },
  ).spawn();
  const buckets: Bucket[] = [];
  let log = "";
  const reading = (async () => {
    let pending = "";
    for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
      pending += text;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        if (!line.startsWith("{")) continue;
        const { servers, failed, retried } = JSON.parse(line);
        buckets.push({ atMs: performance.now(), servers, failed, retried });
      }
    }
  })();
  const errors = (async () => {
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) log += text;
  })();
  const sum = (pick: (b: Bucket) => Record<string, number>) => {
    const total: Record<string, number> = {};
    for (const b of buckets) {
      for (const [key, n] of Object.entries(pick(b))) total[key] = (total[key] ?? 0) + n;
    }
    return total;
  };
  return {
    kind,
    node,
    buckets,
    served: (address) => sum((b) => b.servers)[address] ?? 0,
    failed: () => sum((b) => b.failed),
    log: () => log,
    retried: () => buckets.reduce((n, b) => n + b.retried, 0),
    firstCallTo: (address, afterMs = -Infinity) =>
      buckets.find((b) => b.atMs > afterMs && (b.servers[address] ?? 0) > 0)?.atMs,
    lastCallTo: (address) => buckets.findLast((b) => (b.servers[address] ?? 0) > 0)?.atMs,
    async stop() {
      await child.stdin.close();
      const status = await child.status;
      await Promise.all([reading, errors]);
      if (!status.success) throw new Error(`${kind} xDS client exited ${status.code}:\n${log}`);
    },
  };
}
