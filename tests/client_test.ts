/** The client against real balancer and backend processes (built-in discovery). */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { runLoad } from "../lib/client/load_run.ts";
import { startSystem } from "./_harness.ts";
import { listServers, waitForServers } from "./_system.ts";

Deno.test("client --json prints one summary object with the count per server", async () => {
  await using sys = await startSystem();
  const { balancer, backends: [a, b] } = await sys.balancerWithBackends({ backends: 2 });
  const client = sys.spawn("client", [
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
});

/** Balancer flags that keep a dead server in the picks: no health checks, a TTL of a minute. */
const NO_EJECTION = ["--builtin-ttl-ms", "60000", "--health-interval-ms", "0"];

Deno.test("TaskClient retries on another server when the named one is dead, and loses nothing", async () => {
  await using sys = await startSystem();
  // No health checks: they would drop the dead server (its probe's connection closes) before
  // the client needs to retry.
  const { balancer, backends: [a, b] } = await sys.balancerWithBackends({
    balancerArgs: NO_EJECTION,
    backends: 2,
  });
  const client = sys.taskClient({ balancer: balancer.address, clientId: "retry-test" });
  b.process.signal("SIGKILL");
  await b.process.status;
  // The balancer still lists b (its TTL is a minute), so half the lookups name a dead server.
  const summary = await runLoad({ client, taskType: "SIMPLE", requests: 40, concurrency: 2 });
  assert.equal(summary.failed, 0, JSON.stringify(summary.failuresByCode));
  assert.ok(summary.retried > 0, "some tasks needed a second attempt");
  assert.deepEqual(Object.keys(summary.perServer), [a.address]);
});

Deno.test("TaskClient does not retry a failure other than UNAVAILABLE", async () => {
  await using sys = await startSystem();
  const { balancer } = await sys.balancerWithBackends();
  const client = sys.taskClient({ balancer: balancer.address, clientId: "no-retry" });
  const outcome = await client.run("t-1", "NOT_A_TYPE");
  assert.equal(outcome.ok, false);
  assert.ok(!outcome.ok && outcome.code === grpc.status.INVALID_ARGUMENT);
  assert.equal(outcome.attempts, 1);
});

Deno.test("a backend registers again by itself after the balancer restarts (built-in discovery)", async () => {
  await using sys = await startSystem();
  const { balancer: first, backends: [a] } = await sys.balancerWithBackends();
  await first.process.stop();
  const second = await sys.balancer([], { port: first.port });
  await waitForServers(sys.lbClient(second.address), [a.address], 15_000, true);
});

Deno.test("TaskClient gets another server on retry even under pick_first (GetServer avoid)", async () => {
  await using sys = await startSystem();
  // Health checks off: they would eject the dead server, and this tests the client's own retry.
  const { balancer, backends: [a, b], lb } = await sys.balancerWithBackends({
    balancerArgs: ["--policy", "pick_first", ...NO_EJECTION],
    backends: 2,
  });
  const client = sys.taskClient({ balancer: balancer.address, clientId: "avoid-test" });
  const first = (await listServers(lb)).servers[0].server_address;
  const [dead, alive] = first === a.address ? [a, b] : [b, a];
  dead.process.signal("SIGKILL");
  await dead.process.status;
  // pick_first keeps naming the dead server (its TTL is a minute); every task still succeeds.
  const summary = await runLoad({ client, taskType: "SIMPLE", requests: 20, concurrency: 2 });
  assert.equal(summary.failed, 0, JSON.stringify(summary.failuresByCode));
  assert.equal(summary.retried, 20);
  assert.deepEqual(Object.keys(summary.perServer), [alive.address]);
});
