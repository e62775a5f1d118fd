/**
 * Client-side picking over `WatchServers`: the set arrives and follows changes, the client picks
 * locally, a broken stream costs no task, and a balancer without the RPC means `GetServer`.
 */
import assert from "node:assert/strict";
import { runLoad } from "../lib/client/load_run.ts";
import type { ServerList } from "../lib/wire/proto.ts";
import { startSystem } from "./_harness.ts";
import { freePort, waitFor } from "./_system.ts";

Deno.test("watch mode receives the set, follows a join and a leave, and picks locally", async () => {
  await using sys = await startSystem();
  const { balancer, backends: [a, b] } = await sys.balancerWithBackends({
    balancerArgs: ["--policy", "round_robin"],
    backends: 2,
  });
  const client = sys.taskClient({ balancer: balancer.address, clientId: "w", mode: "watch" });
  await waitFor("the watch to deliver two servers", async () => {
    const named = new Set([await client.getServer(), await client.getServer()]);
    return client.watch!.ready && named.size === 2;
  });
  assert.equal(client.watch!.policyName, "round_robin");
  const c = sys.backend(["--balancer", balancer.address]);
  await waitFor("the watch to add the third server", async () => {
    const named = new Set(await Promise.all([1, 2, 3].map(() => client.getServer())));
    return named.has(c.address);
  }, 15_000);
  await b.process.stop();
  await waitFor("the watch to drop the stopped server", async () => {
    const named = await Promise.all([1, 2, 3, 4, 5, 6].map(() => client.getServer()));
    return !named.includes(b.address);
  }, 15_000);
  const summary = await runLoad({ client, taskType: "SIMPLE", requests: 30, concurrency: 3 });
  assert.equal(summary.failed, 0);
  assert.deepEqual(Object.keys(summary.perServer).sort(), [a.address, c.address].sort());
});

Deno.test("every WatchServers stream gets each change, the same message for the same version", async () => {
  await using sys = await startSystem();
  const balancer = await sys.balancer(["--policy", "least_load"]);
  const lb = sys.lbClient(balancer.address);
  const received: ServerList[][] = [[], [], []];
  for (const [i, messages] of received.entries()) {
    const stream = lb.WatchServers({ client_id: `w${i}` });
    stream.on("data", (message: ServerList) => messages.push(message));
    stream.on("error", () => {});
    sys.defer(() => stream.cancel());
  }
  const a = sys.backend(["--balancer", balancer.address]);
  const names = (message: ServerList | undefined) =>
    message?.servers.map((s) => s.server_address) ?? [];
  await waitFor(
    "every stream to name the backend",
    () => received.every((messages) => names(messages.at(-1)).includes(a.address)),
    15_000,
  );
  await a.process.stop();
  await waitFor(
    "every stream to drop it",
    () => received.every((messages) => messages.length > 1 && names(messages.at(-1)).length === 0),
    15_000,
  );
  for (const messages of received) assert.equal(messages.at(-1)!.policy, "least_load");
  // A change is one message, encoded once: equal wherever two streams got the same version.
  const byVersion = new Map<number, ServerList>();
  let shared = 0;
  for (const message of received.flat()) {
    const seen = byVersion.get(message.version);
    if (seen === undefined) byVersion.set(message.version, message);
    else {
      assert.deepEqual(message, seen);
      shared++;
    }
  }
  assert.ok(
    shared >= 2,
    `no version was sent to two streams (${received.flat().length} messages)`,
  );
});

Deno.test("watch mode keeps its last set through a balancer restart, with no failed task", async () => {
  await using sys = await startSystem();
  const { balancer: first, backends: [a, b] } = await sys.balancerWithBackends({
    balancerArgs: ["--builtin-ttl-ms", "60000"],
    backends: 2,
  });
  const client = sys.taskClient({ balancer: first.address, clientId: "w2", mode: "watch" });
  await waitFor("the watch to be ready", () => client.watch!.ready && client.watch!.connected);
  const load = runLoad({ client, taskType: "SIMPLE", durationMs: 3_000, concurrency: 2 });
  await new Promise((r) => setTimeout(r, 500));
  await first.process.stop(); // the stream breaks mid-run
  await new Promise((r) => setTimeout(r, 1_000));
  sys.spawn("balancer", ["--port", String(first.port)]);
  const summary = await load;
  assert.equal(summary.failed, 0, JSON.stringify(summary.failuresByCode));
  assert.ok(summary.succeeded > 100, `only ${summary.succeeded} tasks`);
  assert.deepEqual(Object.keys(summary.perServer).sort(), [a.address, b.address].sort());
  await waitFor("the watch to reconnect", () => client.watch!.connected, 15_000);
});

Deno.test("watch mode falls back to GetServer against a balancer without WatchServers", async () => {
  await using sys = await startSystem();
  // The echo server implements only GetServer, like a balancer of the original system.
  const port = freePort();
  sys.spawn("balancer", ["--port", String(port)], { script: "lib/bench/echo_baseline.ts" });
  const client = sys.taskClient({ balancer: `127.0.0.1:${port}`, clientId: "w3", mode: "watch" });
  const named = await waitFor("the echo server to answer", () => client.getServer(), 15_000);
  assert.equal(named, "127.0.0.1:1");
  await waitFor("the watch to give up", () => !client.watch!.connected, 5_000);
  assert.equal(client.watch!.ready, false);
  assert.equal(await client.getServer(), "127.0.0.1:1");
});
