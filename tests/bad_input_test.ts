/**
 * Every bad input gets its status code and a message, and changes nothing; bad flags get one
 * line naming the flag and exit status 2.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { spawnEntry } from "../lib/entry_process.ts";
import { createBackendClient, createLoadBalancerClient, unary } from "../lib/proto.ts";
import {
  listServers,
  startBackend,
  startBalancer,
  stopAll,
  waitForServers,
  waitForTask,
} from "./_system.ts";

function rejectsWith(code: grpc.status, pattern: RegExp) {
  return (error: grpc.ServiceError) => {
    assert.equal(grpc.status[error.code], grpc.status[code], error.details);
    assert.match(error.details, pattern);
    return true;
  };
}

Deno.test("balancer answers bad RegisterServer, ReportLoad and GetServer input with a status and changes nothing", async () => {
  const balancer = await startBalancer(["--discovery", "builtin"]);
  const backend = startBackend(["--balancer", balancer.address]);
  const lb = createLoadBalancerClient(balancer.address);
  try {
    await waitForServers(lb, [backend.address], 15_000, true);
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
  } finally {
    lb.close();
    await stopAll(balancer, backend);
  }
});

Deno.test("backend answers unknown or empty task types with INVALID_ARGUMENT naming the accepted values", async () => {
  const backend = startBackend(["--balancer", "127.0.0.1:1"]);
  const be = createBackendClient(backend.address);
  try {
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
  } finally {
    be.close();
    await stopAll(backend);
  }
});

const BAD_FLAGS: [("balancer" | "backend" | "client"), string[], RegExp][] = [
  [
    "balancer",
    ["--policy", "rr"],
    /'--policy' must be one of round_robin, pick_first, least_load, power_of_two, weighted_round_robin, consistent_hash: current value is 'rr'/,
  ],
  ["balancer", ["--port", "70000"], /'--port' must be an integer from 0 to 65535/],
  ["balancer", ["--discovery", "etcd"], /'--discovery etcd' needs '--etcd URL'/],
  [
    "balancer",
    ["--etcd", "127.0.0.1:2379"],
    /'--etcd' must be a comma-separated list of http\(s\):\/\/host:port URLs/,
  ],
  ["balancer", ["--bogus"], /Unknown option '--bogus'/],
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
  ["client", ["--task", "heavy"], /'--task' must be one of simple, cpu_heavy/],
  ["client", ["--requests=-3"], /'--requests' must be an integer from 1/],
  [
    "client",
    ["--requests", "3", "--duration", "2"],
    /'--requests' and '--duration' exclude each other/,
  ],
];

Deno.test("entries refuse bad flags with one line naming the flag, and exit with status 2", async () => {
  await Promise.all(BAD_FLAGS.map(async ([entry, args, pattern]) => {
    const child = spawnEntry(entry, args);
    const status = await child.status;
    const lines = child.log().split("\n").filter((l) => l.trim() !== "");
    assert.equal(status.code, 2, `${entry} ${args.join(" ")}: ${child.log()}`);
    assert.equal(lines.length, 1, `${entry} ${args.join(" ")} printed:\n${child.log()}`);
    assert.match(lines[0], pattern);
  }));
});
