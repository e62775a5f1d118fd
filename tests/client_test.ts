/** The client against real balancer and backend processes (built-in discovery). */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { spawnEntry } from "../lib/harness/entry_process.ts";
import { runLoad } from "../lib/client/load_run.ts";
import { createLoadBalancerClient } from "../lib/wire/proto.ts";
import { TaskClient } from "../lib/client/task_client.ts";
import { listServers, startBackend, startBalancer, stopAll, waitForServers } from "./_system.ts";

Deno.test("client --json prints one summary object with the count per server", async () => {
  const balancer = await startBalancer();
  const a = startBackend(["--balancer", balancer.address]);
  const b = startBackend(["--balancer", balancer.address]);
  const lb = createLoadBalancerClient(balancer.address);
  try {
    await waitForServers(lb, [a.address, b.address]);
    const client = spawnEntry("client", [
      "--balancer",
      balancer.address,
      "--task",
      "cpu_heavy",
      "--requests",
      "20",
      "--concurrency",
      "2",
      "--json",
    ], { captureStdout: true });
    const status = await client.status;
    assert.equal(status.code, 0, client.log());
    const summary = JSON.parse(client.stdout());
    assert.equal(summary.requests, 20);
    assert.equal(summary.failed, 0);
    assert.deepEqual(summary.perServer, { [a.address]: 10, [b.address]: 10 });
    for (const key of ["p50", "p90", "p99", "max"]) assert.ok(summary.latencyMs[key] > 0, key);
    assert.ok(summary.throughput > 0);
  } finally {
    lb.close();
    await stopAll(balancer, a, b);
  }
});

Deno.test("TaskClient retries on another server when the named one is dead, and loses nothing", async () => {
  // No health checks: they would drop the dead server (its probe's connection closes) before
  // the client needs to retry.
  const balancer = await startBalancer([
    "--builtin-ttl-ms",
    "60000",
    "--health-interval-ms",
    "0",
  ]);
  const a = startBackend(["--balancer", balancer.address]);
  const b = startBackend(["--balancer", balancer.address]);
  const lb = createLoadBalancerClient(balancer.address);
  const client = new TaskClient({ balancer: balancer.address, clientId: "retry-test" });
  try {
    await waitForServers(lb, [a.address, b.address]);
    b.process.signal("SIGKILL");
    await b.process.status;
    // The balancer still lists b (its TTL is a minute), so half the lookups name a dead server.
    const summary = await runLoad({ client, taskType: "SIMPLE", requests: 40, concurrency: 2 });
    assert.equal(summary.failed, 0, JSON.stringify(summary.failuresByCode));
    assert.ok(summary.retried > 0, "some tasks needed a second attempt");
    assert.deepEqual(Object.keys(summary.perServer), [a.address]);
  } finally {
    client.close();
    lb.close();
    await stopAll(balancer, a, b);
  }
});

Deno.test("TaskClient does not retry a failure other than UNAVAILABLE", async () => {
  const balancer = await startBalancer();
  const a = startBackend(["--balancer", balancer.address]);
  const lb = createLoadBalancerClient(balancer.address);
  const client = new TaskClient({ balancer: balancer.address, clientId: "no-retry" });
  try {
    await waitForServers(lb, [a.address]);
    const outcome = await client.run("t-1", "NOT_A_TYPE");
    assert.equal(outcome.ok, false);
    assert.ok(!outcome.ok && outcome.code === grpc.status.INVALID_ARGUMENT);
    assert.equal(outcome.attempts, 1);
  } finally {
    client.close();
    lb.close();
    await stopAll(balancer, a);
  }
});

Deno.test("a backend registers again by itself after the balancer restarts (built-in discovery)", async () => {
  const first = await startBalancer();
  const a = startBackend(["--balancer", first.address]);
  let second: Awaited<ReturnType<typeof startBalancer>> | undefined;
  let lb = createLoadBalancerClient(first.address);
  try {
    await waitForServers(lb, [a.address]);
    lb.close();
    await first.process.stop();
    second = await startBalancerOn(first.port);
    lb = createLoadBalancerClient(second.address);
    await waitForServers(lb, [a.address], 15_000, true);
  } finally {
    lb.close();
    await stopAll(first, second, a);
  }
});

/** Restarts a balancer on a given port (the old one's port is free again once it exited). */
async function startBalancerOn(port: number) {
  const process = spawnEntry("balancer", ["--port", String(port)]);
  const address = `127.0.0.1:${port}`;
  const lb = createLoadBalancerClient(address);
  try {
    await waitForServers(lb, [], 15_000).catch(() => {});
  } finally {
    lb.close();
  }
  return { address, port, process };
}

Deno.test("TaskClient gets another server on retry even under pick_first (GetServer avoid)", async () => {
  // Health checks off: they would eject the dead server, and this tests the client's own retry.
  const balancer = await startBalancer([
    "--policy",
    "pick_first",
    "--builtin-ttl-ms",
    "60000",
    "--health-interval-ms",
    "0",
  ]);
  const a = startBackend(["--balancer", balancer.address]);
  const b = startBackend(["--balancer", balancer.address]);
  const lb = createLoadBalancerClient(balancer.address);
  const client = new TaskClient({ balancer: balancer.address, clientId: "avoid-test" });
  try {
    await waitForServers(lb, [a.address, b.address]);
    const first = (await listServers(lb)).servers[0].server_address;
    const [dead, alive] = first === a.address ? [a, b] : [b, a];
    dead.process.signal("SIGKILL");
    await dead.process.status;
    // pick_first keeps naming the dead server (its TTL is a minute); every task still succeeds.
    const summary = await runLoad({ client, taskType: "SIMPLE", requests: 20, concurrency: 2 });
    assert.equal(summary.failed, 0, JSON.stringify(summary.failuresByCode));
    assert.equal(summary.retried, 20);
    assert.deepEqual(Object.keys(summary.perServer), [alive.address]);
  } finally {
    client.close();
    lb.close();
    await stopAll(balancer, a, b);
  }
});
