/**
 * Every bad input gets its status code and a message, and changes nothing; bad flags get one
 * line naming the flag and exit status 2.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { PROJECT_ROOT, spawnEntry } from "../lib/harness/entry_process.ts";
import {
  type BackendClient,
  type LoadBalancerClient,
  type LoadBalancerPackage,
  loadContract,
  type ServerList,
  unary,
} from "../lib/wire/proto.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../lib/wire/grpc_server.ts";
import protoText from "../proto/load_balancer.proto" with { type: "text" };
import { startSystem } from "./_harness.ts";
import { listServers, waitForServers, waitForTask } from "./_system.ts";

function rejectsWith(code: grpc.status, pattern: RegExp) {
  return (error: grpc.ServiceError) => {
    assert.equal(grpc.status[error.code], grpc.status[code], error.details);
    assert.match(error.details, pattern);
    return true;
  };
}

Deno.test("balancer answers bad RegisterServer, ReportLoad and GetServer input with a status and changes nothing", async () => {
  await using sys = await startSystem();
  const { backends: [backend], lb } = await sys.balancerWithBackends({
    balancerArgs: ["--discovery", "builtin"],
    withLoad: true,
  });
  const before = await listServers(lb);

  for (
    const bad of [
      "",
      "no-port",
      "host:0",
      "host:70000",
      "bad host:80",
      "h:1:x",
      "x".repeat(300) + ":1",
    ]
  ) {
    await assert.rejects(
      unary(lb.RegisterServer, lb, { server_address: bad }),
      rejectsWith(grpc.status.INVALID_ARGUMENT, /server_address must be host:port/),
      `RegisterServer '${bad.slice(0, 20)}'`,
    );
  }
  for (const load of [-1, 100.5, NaN, Infinity, -Infinity]) {
    await assert.rejects(
      unary(lb.ReportLoad, lb, { server_address: backend.address, cpu_load: load }),
      rejectsWith(grpc.status.INVALID_ARGUMENT, /cpu_load must be a percentage from 0 to 100/),
      `ReportLoad ${load}`,
    );
  }
  await assert.rejects(
    unary(lb.ReportLoad, lb, { server_address: "127.0.0.1:1", cpu_load: 5 }),
    rejectsWith(grpc.status.NOT_FOUND, /127\.0\.0\.1:1 is not registered/),
  );
  await assert.rejects(
    unary(lb.ReportLoad, lb, { server_address: "not an address", cpu_load: 5 }),
    rejectsWith(grpc.status.INVALID_ARGUMENT, /server_address/),
  );
  await assert.rejects(
    unary(lb.GetServer, lb, { client_id: "c".repeat(5_000) }),
    rejectsWith(grpc.status.INVALID_ARGUMENT, /client_id must be at most/),
  );
  await assert.rejects(
    unary(lb.GetServer, lb, {
      client_id: "c",
      avoid: Array.from({ length: 17 }, (_, i) => `10.0.0.${i}:1`),
    }),
    rejectsWith(grpc.status.INVALID_ARGUMENT, /avoid must hold at most 16 addresses/),
  );

  const after = await listServers(lb);
  assert.deepEqual(
    after.servers.map((s) => s.server_address),
    before.servers.map((s) => s.server_address),
    "no phantom server was added and none removed",
  );
  // The bad reports did not replace the backend's load.
  assert.ok(after.servers.every((s) => s.cpu_load >= 0 && s.cpu_load <= 100));
});

Deno.test("backend answers unknown or empty task types with INVALID_ARGUMENT naming the accepted values", async () => {
  await using sys = await startSystem();
  const backend = sys.backend(["--balancer", "127.0.0.1:1"]);
  const be = sys.backendClient(backend.address);
  await waitForTask(be, "warm-up", "SIMPLE");
  for (const taskType of ["", "UNKNOWN", "simple", "CPU-HEAVY"]) {
    await assert.rejects(
      unary(be.ProcessTask, be, { task_id: "t", task_type: taskType }),
      rejectsWith(grpc.status.INVALID_ARGUMENT, /task_type must be one of SIMPLE, CPU_HEAVY/),
      `task_type '${taskType}'`,
    );
  }
  await assert.rejects(
    unary(be.ProcessTask, be, { task_id: "t".repeat(2_000), task_type: "SIMPLE" }),
    rejectsWith(grpc.status.INVALID_ARGUMENT, /task_id must be at most/),
  );
  // Still serving after all that.
  const ok = await unary(be.ProcessTask, be, { task_id: "t", task_type: "SIMPLE" });
  assert.match(ok.result, /done/);
});

// ---------------------------------------------------------------------------------------------
// Every RPC, every kind of bad value: the status, a message, and nothing changed.

/** Addresses that are not `host:port` with a port from 1 to 65535. */
const BAD_ADDRESSES = [
  "127.0.0.1:65536",
  "127.0.0.1:-1",
  "127.0.0.1:abc",
  "host:",
  ":80",
  "[::1",
  "[::1]",
  "::1:80x",
  " 127.0.0.1:80",
  "127.0.0.1:80 ",
  "127.0.0.1 :80",
  "http://127.0.0.1:80",
  "x".repeat(10_000) + ":80",
];

/**
 * The contract with a `bytes pad = 1000` field in every message, so that even a request type
 * without fields (`ListServersRequest`) can be made larger than the server's limit. The servers
 * skip the unknown field, as proto3 requires, so the size is the only thing wrong.
 */
const PADDED: LoadBalancerPackage = loadContract(
  protoText.replace(/^message (\w+) \{$/gm, "message $1 {\n  bytes pad = 1000;"),
);
/** A pad beyond the servers' maximum message size. */
const OVERSIZED_PAD = new Uint8Array(DEFAULT_MAX_MESSAGE_BYTES + 1_024);

/** Asserts that `call` fails with `code` and a non-empty message. */
async function expectStatus(
  label: string,
  call: () => Promise<unknown>,
  code: grpc.status,
): Promise<void> {
  let error: grpc.ServiceError | undefined;
  try {
    await call();
  } catch (e) {
    error = e as grpc.ServiceError;
  }
  assert.ok(error, `${label}: answered OK, expected ${grpc.status[code]}`);
  assert.equal(grpc.status[error.code], grpc.status[code], `${label}: ${error.details}`);
  assert.ok(error.details.trim().length > 0, `${label}: ${grpc.status[code]} without a message`);
  assert.ok(error.details.length <= 1_024, `${label}: message of ${error.details.length} chars`);
}

/** The first message of a `WatchServers` stream (then cancels it), or its error. */
function firstWatchMessage(client: LoadBalancerClient, request: object): Promise<ServerList> {
  return new Promise((resolve, reject) => {
    const stream = client.WatchServers(request as { client_id: string }, {
      deadline: Date.now() + 5_000,
    });
    stream.on("data", (message: ServerList) => {
      resolve(message);
      stream.cancel();
    });
    stream.on("error", (error) => reject(error));
  });
}

/** What `ListServers` shows, less what moves by itself (report age, weights, health). */
async function balancerState(lb: LoadBalancerClient) {
  const list = await listServers(lb);
  return {
    policy: list.policy,
    discovery: list.discovery,
    servers: list.servers.map((s) => ({
      address: s.server_address,
      hasLoad: s.has_load,
      cpuLoad: s.cpu_load,
      inFlight: s.in_flight,
      qps: s.qps,
    })).sort((a, b) => a.address.localeCompare(b.address)),
  };
}

/** Bad balancer calls, each with the status it must get. */
function badBalancerCalls(
  lb: LoadBalancerClient,
  padded: LoadBalancerClient,
  known: string,
): [string, () => Promise<unknown>, grpc.status][] {
  const { INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED } = grpc.status;
  const report = (fields: object) => () =>
    unary(lb.ReportLoad, lb, { server_address: known, cpu_load: 50, ...fields });
  const pad = { pad: OVERSIZED_PAD };
  return [
    ...BAD_ADDRESSES.flatMap((
      address,
    ): [string, () => Promise<unknown>, grpc.status][] => [
      [
        `RegisterServer '${address.slice(0, 20)}'`,
        () => unary(lb.RegisterServer, lb, { server_address: address }),
        INVALID_ARGUMENT,
      ],
      [
        `ReportLoad '${address.slice(0, 20)}'`,
        report({ server_address: address }),
        INVALID_ARGUMENT,
      ],
    ]),
    ["ReportLoad {}", () => unary(lb.ReportLoad, lb, {} as never), INVALID_ARGUMENT],
    ["ReportLoad cpu_load 1e9", report({ cpu_load: 1e9 }), INVALID_ARGUMENT],
    ["ReportLoad cpu_load -0.01", report({ cpu_load: -0.01 }), INVALID_ARGUMENT],
    ...[-1, NaN, Infinity, -Infinity].flatMap((
      rate,
    ): [string, () => Promise<unknown>, grpc.status][] => [
      [`ReportLoad qps ${rate}`, report({ qps: rate }), INVALID_ARGUMENT],
      [`ReportLoad eps ${rate}`, report({ eps: rate }), INVALID_ARGUMENT],
    ]),
    ["ReportLoad in_flight -1", report({ in_flight: -1 }), INVALID_ARGUMENT],
    ["ReportLoad queue_length -1", report({ queue_length: -1 }), INVALID_ARGUMENT],
    ["ReportLoad in_flight 2^32-1", report({ in_flight: 2 ** 32 - 1 }), INVALID_ARGUMENT],
    ["ReportLoad unregistered", report({ server_address: "127.0.0.1:7999" }), NOT_FOUND],
    [
      "ReportLoad unregistered [::1]",
      report({ server_address: known.replace("127.0.0.1", "[::1]") }),
      NOT_FOUND,
    ],
    ...["", "rr", "ROUND_ROBIN", " least_load", "least_load\n", "x".repeat(10_000)].map((
      policy,
    ): [string, () => Promise<unknown>, grpc.status] => [
      `SetPolicy '${policy.slice(0, 20)}'`,
      () => unary(lb.SetPolicy, lb, { policy }),
      INVALID_ARGUMENT,
    ]),
    [
      "GetServer avoid of 10 KB",
      () => unary(lb.GetServer, lb, { client_id: "c", avoid: ["x".repeat(10_000)] }),
      INVALID_ARGUMENT,
    ],
    ...(["GetServer", "RegisterServer", "ReportLoad", "ListServers", "SetPolicy"] as const).map((
      method,
    ): [string, () => Promise<unknown>, grpc.status] => [
      `${method} oversized`,
      () => unary(padded[method] as never, padded, pad as never),
      RESOURCE_EXHAUSTED,
    ]),
    ["WatchServers oversized", () => firstWatchMessage(padded, pad), RESOURCE_EXHAUSTED],
  ];
}

Deno.test("balancer answers every malformed, empty or oversized value of every RPC with a status and a message, and ListServers shows nothing changed", async () => {
  await using sys = await startSystem();
  const balancer = await sys.balancer([
    "--discovery",
    "builtin",
    "--builtin-ttl-ms",
    "600000",
    "--policy",
    "least_load",
    // No health checks: their answers carry the backends' load (ORCA), which would move it.
    "--health-interval-ms",
    "0",
  ]);
  // Real backends that report to nobody: only this test's own calls register them and move
  // their loads.
  const backends = [1, 2].map(() => sys.backend(["--balancer", "127.0.0.1:1"]));
  const lb = sys.lbClient(balancer.address);
  const padded = sys.lbClient(balancer.address, { contract: PADDED });
  const known = backends[0].address;
  for (const { address } of backends) {
    await unary(lb.RegisterServer, lb, { server_address: address });
  }
  await waitForServers(lb, backends.map((b) => b.address));
  await unary(lb.ReportLoad, lb, { server_address: known, cpu_load: 12.5, in_flight: 3, qps: 4 });
  const before = await balancerState(lb);
  assert.equal(before.servers.length, 2);
  assert.equal(before.policy, "least_load");

  const calls = badBalancerCalls(lb, padded, known);
  for (const [label, call, code] of calls) {
    await expectStatus(label, call, code);
    assert.deepEqual(await balancerState(lb), before, `${label} changed the balancer's state`);
  }
  // Empty requests where every field is optional are valid and change nothing either.
  const named = await unary(lb.GetServer, lb, {} as never);
  assert.ok(before.servers.some((s) => s.address === named.server_address));
  assert.equal((await firstWatchMessage(lb, {})).servers.length, 2);
  assert.deepEqual(await balancerState(lb), before);
  assert.equal(balancer.process.exited, false);
  console.log(`balancer: ${calls.length} bad calls answered with their status`);
});

/** The backend's counters that a task would move. */
async function taskCounters(be: BackendClient) {
  const stats = await unary(be.GetStats, be, {});
  return { simple: stats.simple_completed, heavy: stats.heavy_completed };
}

Deno.test("backend answers malformed, empty or oversized ProcessTask and GetStats with a status and runs nothing", async () => {
  await using sys = await startSystem();
  const backend = sys.backend(["--balancer", "127.0.0.1:1"]);
  const be = sys.backendClient(backend.address);
  const padded = sys.backendClient(backend.address, { contract: PADDED });
  const { INVALID_ARGUMENT, RESOURCE_EXHAUSTED } = grpc.status;
  await waitForTask(be, "warm-up", "SIMPLE");
  const before = await taskCounters(be);
  const calls: [string, () => Promise<unknown>, grpc.status][] = [
    ["ProcessTask {}", () => unary(be.ProcessTask, be, {} as never), INVALID_ARGUMENT],
    ...["SIMPLE ", " CPU_HEAVY", "SIMPLE\u0000", "Simple", "x".repeat(10_000)].map((
      taskType,
    ): [string, () => Promise<unknown>, grpc.status] => [
      `ProcessTask '${taskType.slice(0, 20)}'`,
      () => unary(be.ProcessTask, be, { task_id: "t", task_type: taskType }),
      INVALID_ARGUMENT,
    ]),
    [
      "ProcessTask oversized",
      () => unary(padded.ProcessTask, padded, { pad: OVERSIZED_PAD } as never),
      RESOURCE_EXHAUSTED,
    ],
    [
      "GetStats oversized",
      () => unary(padded.GetStats, padded, { pad: OVERSIZED_PAD } as never),
      RESOURCE_EXHAUSTED,
    ],
  ];
  for (const [label, call, code] of calls) {
    await expectStatus(label, call, code);
    assert.deepEqual(await taskCounters(be), before, `${label} ran a task`);
  }
  assert.equal(backend.process.exited, false);
  const ok = await unary(be.ProcessTask, be, { task_id: "after", task_type: "CPU_HEAVY" });
  assert.match(ok.result, /done/);
});

/** A backend that emulates its tasks, with a balancer it never reaches. */
const EMULATED = ["--port", "0", "--balancer", "127.0.0.1:1", "--service-time", "exp:20ms"];

const BAD_FLAGS: [
  ("balancer" | "backend" | "client"),
  string[],
  RegExp,
  Record<string, string>?,
][] = [
  [
    "balancer",
    ["--policy", "rr"],
    /'--policy' must be one of round_robin, pick_first, least_load, power_of_two, weighted_round_robin, consistent_hash, prequal: current value is 'rr'/,
  ],
  ["balancer", ["--port", "70000"], /'--port' must be an integer from 0 to 65535/],
  ["balancer", ["--discovery", "etcd"], /'--discovery etcd' needs '--etcd URL'/],
  [
    "balancer",
    ["--etcd", "127.0.0.1:2379"],
    /'--etcd' must be a comma-separated list of http\(s\):\/\/host:port URLs/,
  ],
  ["balancer", ["--bogus"], /Unknown option '--bogus'/],
  [
    "balancer",
    ["--max-message-bytes", "100"],
    /'--max-message-bytes' must be an integer from 1024 to 67108864: current value is '100'/,
  ],
  [
    "backend",
    ["--port", "0", "--balancer", "127.0.0.1:1", "--max-message-bytes", "1e6"],
    /'--max-message-bytes' must be an integer from 1024/,
  ],
  ["balancer", ["--http-host", "0.0.0.0"], /'--http-host' needs '--http-port PORT'/],
  ["balancer", ["--http-port=-1"], /'--http-port' must be an integer from 0 to 65535/],
  ["backend", ["--balancer", "127.0.0.1:50051"], /'--port' is required/],
  ["backend", ["--port", "0"], /needs '--etcd URL' or '--balancer HOST:PORT'/],
  ["backend", ["--port", "0", "--balancer", "nowhere"], /'--balancer' must be host:port/],
  [
    "backend",
    ["--port", "0", "--balancer", "127.0.0.1:1", "--workers", "0"],
    /'--workers' must be an integer from 1 to 256/,
  ],
  [
    "backend",
    ["--port", "0", "--balancer", "127.0.0.1:1", "--slowdown", "abc"],
    /'--slowdown' must be a number/,
  ],
  [
    "backend",
    ["--port", "0", "--balancer", "127.0.0.1:1", "--service-time", "gauss:20ms"],
    /'--service-time' is invalid: 'gauss:20ms' is not a service time \(unknown distribution 'gauss'\); use fixed:T \| exp:MEAN/,
  ],
  [
    "backend",
    ["--port", "0", "--balancer", "127.0.0.1:1", "--service-time", "exp:fast"],
    /'--service-time' is invalid: 'exp:fast' is not a service time .*; use fixed:T/,
  ],
  [
    "backend",
    [...EMULATED, "--capacity", "0"],
    /'--capacity' must be a number above 0 and at most 1: current value is '0'/,
  ],
  [
    "backend",
    [...EMULATED, "--capacity", "1.5"],
    /'--capacity' must be a number above 0 and at most 1: current value is '1\.5'/,
  ],
  [
    "backend",
    ["--port", "0", "--balancer", "127.0.0.1:1", "--capacity", "0.5"],
    /'--capacity' needs '--service-time DIST'/,
  ],
  [
    "backend",
    [...EMULATED, "--capacity-schedule", "0s:1,40s:0.3,20s:1"],
    /'--capacity-schedule' is invalid: '0s:1,40s:0\.3,20s:1' is not a capacity schedule \(times must be ascending\); use T:F,T:F,\.\.\./,
  ],
  [
    "backend",
    [...EMULATED, "--capacity-schedule", "0s:1,20s:0"],
    /'--capacity-schedule' is invalid: .*\(capacity 0 is not above 0 and at most 1\)/,
  ],
  [
    "backend",
    [...EMULATED, "--capacity", "0.5", "--capacity-schedule", "0s:1"],
    /'--capacity' and '--capacity-schedule' exclude each other/,
  ],
  [
    "backend",
    [...EMULATED, "--slowdown", "4"],
    /'--slowdown' and '--service-time' exclude each other \(use '--capacity'\)/,
  ],
  ["client", ["--task", "heavy"], /'--task' must be one of simple, cpu_heavy/],
  ["client", ["--requests=-3"], /'--requests' must be an integer from 1/],
  [
    "client",
    ["--requests", "3", "--duration", "2"],
    /'--requests' and '--duration' exclude each other/,
  ],
  [
    "balancer",
    ["--token-file", "tests/fixtures/tls/ca.crt"],
    /the file of '--token-file' is outside what this task may read: put it under \.\/secrets/,
  ],
  ["balancer", ["--token-file", "secrets/no-such-file"], /'--token-file' does not exist/],
  ["balancer", ["--protect-get-server"], /'--protect-get-server' needs '--token-file'/],
  ["balancer", ["--xds-service", "tasks,bad name"], /'--xds-service' takes NAME or NAME=PREFIX/],
  ["balancer", ["--xds-service", "tasks,tasks"], /'--xds-service' names a service twice/],
  [
    "balancer",
    ["--xds-service", "billing=/billing/"],
    /'--xds-service billing=\/billing\/' watches an etcd prefix, which needs etcd discovery/,
  ],
  ["balancer", ["--tls-ca", "secrets/ca.crt"], /'--tls-cert' and '--tls-key' must be given/],
  [
    "backend",
    [
      "--port",
      "0",
      "--balancer",
      "127.0.0.1:1",
      "--tls-cert",
      "a",
      "--tls-key",
      "b",
      "--tls-mutual",
    ],
    /'--tls-mutual' needs '--tls-ca'/,
  ],
  ["client", ["--tls-key", "secrets/client.key"], /'--tls-cert' and '--tls-key' must be given/],
  ["client", ["--tls-ca", "tests/fixtures/tls/ca.crt"], /'--tls-ca' is outside what this task/],
  [
    "backend",
    ["--port", "0", "--balancer", "127.0.0.1:1", "--host", "0.0.0.0"],
    /'--host 0\.0\.0\.0' listens on every interface, .*: give '--advertise HOST'/,
  ],
  [
    "backend",
    ["--port", "0", "--balancer", "127.0.0.1:1", "--advertise", "0.0.0.0"],
    /'--advertise' must be HOST or HOST:PORT .*: current value is '0\.0\.0\.0'/,
  ],
  [
    "backend",
    ["--port", "0", "--balancer", "127.0.0.1:1", "--advertise", "::1"],
    /'--advertise' must be HOST or HOST:PORT \(IPv6 in brackets\).*: current value is '::1'/,
  ],
  [
    "balancer",
    ["--host", "0.0.0.0", "--etcd", "http://127.0.0.1:1"],
    /'--host 0\.0\.0\.0' listens on every interface, .*: give '--advertise HOST'/,
  ],
  // The same checks for values from LB_* variables, which are named with their flag.
  ["balancer", [], /'LB_POLICY' \(--policy\) must be one of .*: current value is 'rr'/, {
    LB_POLICY: "rr",
  }],
  ["balancer", [], /'LB_PORT' \(--port\) must be an integer from 0 to 65535/, { LB_PORT: "x" }],
  [
    "balancer",
    [],
    /'LB_TLS_MUTUAL' \(--tls-mutual\) must be one of 1, true, yes, 0, false, no: current value is 'maybe'/,
    { LB_TLS_MUTUAL: "maybe" },
  ],
  [
    "balancer",
    [],
    /'LB_PROTECT_GET_SERVER' \(--protect-get-server\) needs '--token-file'/,
    { LB_PROTECT_GET_SERVER: "yes" },
  ],
  ["backend", ["--port", "0"], /'LB_ETCD' \(--etcd\) must be a comma-separated/, {
    LB_ETCD: "127.0.0.1:2379",
  }],
  ["client", [], /'LB_LOG_FORMAT' \(--log-format\) must be one of text, json/, {
    LB_LOG_FORMAT: "xml",
  }],
];

Deno.test("entries refuse bad flags with one line naming the flag, and exit with status 2", async () => {
  await Promise.all(BAD_FLAGS.map(async ([entry, args, pattern, env]) => {
    const child = spawnEntry(entry, args, { env });
    const status = await child.status;
    const lines = child.log().split("\n").filter((l) => l.trim() !== "");
    assert.equal(status.code, 2, `${entry} ${args.join(" ")}: ${child.log()}`);
    assert.equal(lines.length, 1, `${entry} ${args.join(" ")} printed:\n${child.log()}`);
    assert.match(lines[0], pattern);
  }));
});

/**
 * Entries run with `deno run` and a narrowed `--allow-net` (as an operator would), each with an
 * address the grant does not cover, and the start of the one line each must print.
 */
const NARROWED_NET: [entry: string, permissions: string[], args: string[], line: string][] = [
  [
    "backend",
    ["--allow-net=127.0.0.1", "--allow-read=node_modules,secrets", "--allow-env"],
    ["--port", "0", "--host", "0.0.0.0", "--advertise", "x", "--balancer", "127.0.0.1:1"],
    "error: Cannot start backend as its net permission does not cover '--host 0.0.0.0 --port 0'",
  ],
  [
    "client",
    ["--allow-net=127.0.0.1", "--allow-read=node_modules,secrets", "--allow-env"],
    ["--balancer", "localhost:1"],
    "error: Cannot start client as its net permission does not cover '--balancer localhost:1'",
  ],
  // The name is granted but not the address it resolves to, which Deno checks on connecting.
  [
    "client",
    ["--allow-net=localhost", "--allow-read=node_modules,secrets", "--allow-env"],
    ["--balancer", "localhost:1"],
    "error: Cannot start client as its net permission does not cover '--balancer localhost:1': " +
    "localhost resolves to 127.0.0.1: add 127.0.0.1:1 to --allow-net",
  ],
];

Deno.test("entries under a narrowed --allow-net refuse an address it does not cover with one line naming the flag, and exit with status 2", async () => {
  // Flags come from the command line alone, not from LB_* variables of whoever runs the tests.
  const env = Object.fromEntries(
    Object.keys(Deno.env.toObject()).filter((k) => k.startsWith("LB_")).map((k) => [k, ""]),
  );
  await Promise.all(NARROWED_NET.map(async ([entry, permissions, args, line]) => {
    const command = `${entry} ${args.join(" ")} (${permissions[0]})`;
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", ...permissions, `${entry}.ts`, ...args],
      cwd: PROJECT_ROOT,
      stdin: "null",
      stdout: "null",
      env: { ...env, NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(stderr);
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    assert.equal(code, 2, `${command}: ${text}`);
    assert.equal(lines.length, 1, `${command} printed:\n${text}`);
    assert.ok(lines[0].startsWith(line), `${command} printed:\n${text}`);
  }));
});

Deno.test("--max-message-bytes sets the largest request a balancer accepts", async () => {
  await using sys = await startSystem();
  const balancer = await sys.balancer(["--max-message-bytes", "2048"]);
  const padded = sys.lbClient(balancer.address, { contract: PADDED });
  const list = (pad: number) =>
    unary(padded.ListServers, padded, { pad: new Uint8Array(pad) } as never, {
      deadline: Date.now() + 5_000,
    });
  await list(1_500); // under the limit
  await expectStatus("ListServers of 3 KB", () => list(3_000), grpc.status.RESOURCE_EXHAUSTED);
});
