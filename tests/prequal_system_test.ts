/**
 * `prequal` on real processes: the balancer probes backends over its health-check connections,
 * each answer an ORCA report of the backend's requests in flight and latency estimate. A slow
 * backend gets far fewer tasks; a backend that tells nothing (as the original ones) is still
 * picked, by count.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { DEFAULT_ETCD_PREFIX } from "../lib/etcd/etcd_layout.ts";
import { loadContract, type TaskRequest, unary } from "../lib/wire/proto.ts";
import { describe } from "./_load.ts";
import { startSystem, type TestSystem } from "./_harness.ts";
import { listServers, waitFor, waitForServers } from "./_system.ts";
import { bindServer } from "../lib/wire/grpc_server.ts";

/** Two slots each, 20 ms a task at full speed. */
const EMULATED = ["--service-time", "exp:20ms", "--workers", "2"];

/** A prequal balancer with a fast backend and one at capacity 0.25, both listed with load. */
async function fastAndSlow(sys: TestSystem) {
  const balancer = await sys.balancer(["--policy", "prequal"]);
  const lb = sys.lbClient(balancer.address);
  const fast = sys.backend(["--balancer", balancer.address, ...EMULATED]);
  const slow = sys.backend(["--balancer", balancer.address, ...EMULATED, "--capacity", "0.25"]);
  await waitForServers(lb, [fast.address, slow.address], 15_000, true);
  return { balancer, lb, fast, slow };
}

Deno.test("prequal: the capacity-0.25 backend gets far fewer tasks, all succeed, and ListServers shows each one's RIF and latency", async () => {
  await using sys = await startSystem();
  const { balancer, lb, fast, slow } = await fastAndSlow(sys);

  const client = sys.timedClient({ clientId: "prequal", balancer: balancer.address });
  const load = sys.load({ client, taskType: "CPU_HEAVY", concurrency: 4 });
  await new Promise((r) => setTimeout(r, 3_000));
  const totals = await load.stop();
  const [toFast, toSlow] = [fast, slow].map((b) => totals.perServer[b.address] ?? 0);
  console.log(`[prequal] CPU_HEAVY x4: ${describe(totals)}; fast ${toFast}, slow ${toSlow}`);
  assert.equal(totals.failed, 0, JSON.stringify(totals.failuresByCode));
  // The slow one serves a fifth of the pool's capacity: well under half the fast one's tasks.
  assert.ok(toSlow * 2 < toFast, `slow got ${toSlow} tasks, fast ${toFast}`);

  const servers = (await listServers(lb)).servers;
  const status = (address: string) => servers.find((s) => s.server_address === address)!;
  for (const b of [fast, slow]) assert.ok(status(b.address).has_probe, `${b.address} answered`);
  assert.ok(
    status(slow.address).probe_latency_ms > status(fast.address).probe_latency_ms,
    `the slow one expects more latency: ${JSON.stringify(servers)}`,
  );
});

Deno.test("prequal in watch mode: the client probes the backends itself, and the slow one gets far fewer tasks", async () => {
  await using sys = await startSystem();
  const { balancer, fast, slow } = await fastAndSlow(sys);

  const client = sys.timedClient({
    clientId: "watcher",
    balancer: balancer.address,
    mode: "watch",
  });
  await waitFor("the watch client to take the balancer's policy", () => {
    return client.watch?.policyName === "prequal";
  }, 10_000);
  const load = sys.load({ client, taskType: "CPU_HEAVY", concurrency: 4 });
  await new Promise((r) => setTimeout(r, 3_000));
  const totals = await load.stop();
  const [toFast, toSlow] = [fast, slow].map((b) => totals.perServer[b.address] ?? 0);
  console.log(`[prequal] watch, CPU_HEAVY x4: ${describe(totals)}; fast ${toFast}, slow ${toSlow}`);
  assert.equal(totals.failed, 0, JSON.stringify(totals.failuresByCode));
  assert.ok(toSlow * 2 < toFast, `slow got ${toSlow} tasks, fast ${toFast}`);
});

Deno.test("prequal picks a backend that answers no probe (an original one) by count, beside one that does", async () => {
  await using sys = await startSystem({ etcd: true });
  const balancer = await sys.balancer(sys.onEtcd("--policy", "prequal"));
  const lb = sys.lbClient(balancer.address);
  const ours = sys.backend(sys.onEtcd(...EMULATED));
  // An original backend: the Backend service only (no health service, so no load report),
  // registered the original's way.
  const original = new grpc.Server();
  const contract = loadContract(
    await Deno.readTextFile(new URL("./fixtures/original_load_balancer.proto", import.meta.url)),
  );
  original.addService(contract.Backend.service, {
    ProcessTask: (
      call: grpc.ServerUnaryCall<TaskRequest, unknown>,
      done: grpc.sendUnaryData<unknown>,
    ) => done(null, { result: `done ${call.request.task_id}` }),
  });
  const port = await bindServer(original, "127.0.0.1", 0);
  sys.defer(() => original.forceShutdown());
  const originalAddress = `127.0.0.1:${port}`;
  await sys.etcdClient().put(`${DEFAULT_ETCD_PREFIX}${originalAddress}`).value(originalAddress);
  await waitForServers(lb, [ours.address, originalAddress], 15_000);

  // Picks until the original one is known not to answer probes, then count a few hundred.
  await waitFor("the original backend to be known as unprobed", async () => {
    await unary(lb.GetServer, lb, { client_id: "warm" });
    const servers = (await listServers(lb)).servers;
    return servers.find((s) => s.server_address === ours.address)?.has_probe;
  }, 10_000);
  const counts = new Map<string, number>();
  for (let i = 0; i < 400; i++) {
    const named = await unary(lb.GetServer, lb, { client_id: `c-${i}` });
    counts.set(named.server_address, (counts.get(named.server_address) ?? 0) + 1);
  }
  const share = (counts.get(originalAddress) ?? 0) / 400;
  console.log(`[prequal] original backend's share of 400 picks: ${share}`);
  assert.ok(share > 0.35 && share < 0.65, `by count, about half: ${share}`);
  const servers = (await listServers(lb)).servers;
  assert.equal(servers.find((s) => s.server_address === originalAddress)?.has_probe, false);
});
