/**
 * The whole system on a real etcd, every part a real process: ejection and eviction of a killed backend,
 * a new backend's first picks, graceful deregistration, and etcd outages.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { type LoadBalancerClient, unary } from "../lib/wire/proto.ts";
import { bindServer, createServer, shutdownServer } from "../lib/wire/grpc_server.ts";
import { startSystem, type TestSystem } from "./_harness.ts";
import { listServers, type Started, waitFor, waitForServers } from "./_system.ts";

const TTL_S = 2;

/**
 * Starts a balancer with `policy` on the system's etcd, a client of it, and `count` backends,
 * and waits until it lists them; `backend` starts another backend on etcd with a lease of
 * {@linkcode TTL_S} and `extra` flags.
 */
async function etcdBalancer(sys: TestSystem, policy: string, count = 0) {
  const balancer = await sys.balancer(sys.onEtcd("--policy", policy));
  const lb = sys.lbClient(balancer.address);
  const backend = (extra: string[] = []): Started =>
    sys.backend(sys.onEtcd("--lease-ttl", String(TTL_S), ...extra));
  const backends = Array.from({ length: count }, () => backend());
  if (count > 0) await waitForServers(lb, backends.map((b) => b.address));
  return { balancer, lb, backend, backends };
}

/**
 * A gRPC server with no service at all, as an original backend looks to the balancer's health
 * check (UNIMPLEMENTED: alive, so healthy); stopped with the system.
 */
async function startBareServer(sys: TestSystem): Promise<{ address: string }> {
  const server = createServer();
  const port = await bindServer(server, "127.0.0.1", 0);
  sys.defer(() => shutdownServer(server, 1_000));
  return { address: `127.0.0.1:${port}` };
}

async function getServer(lb: LoadBalancerClient): Promise<string> {
  const r = await unary(lb.GetServer, lb, { client_id: "t" }, { deadline: Date.now() + 2_000 });
  return r.server_address;
}

/** How many times the balancer listed the servers' prefix (once at start; again on a relist). */
function lists(balancer: Started): number {
  return balancer.process.log().match(/Listed \d+ servers under \/servers\//g)?.length ?? 0;
}

Deno.test("a backend killed with SIGKILL leaves the picks by its health check while its lease still holds it, and the set after its lease TTL", async () => {
  await using sys = await startSystem({ etcd: true });
  const { lb, backends: [a, b] } = await etcdBalancer(sys, "round_robin", 2);
  b.process.signal("SIGKILL");
  await b.process.status;
  const killedAt = performance.now();
  // Polls picks themselves: round robin over two servers names b within two picks while live.
  // Each poll also notes whether the balancer still lists b (its lease still holds it).
  let listedWhenEjected = false;
  await waitFor(
    `${b.address} to leave the picks`,
    async () => {
      const picks = [await getServer(lb), await getServer(lb)];
      const listed = (await listServers(lb)).servers.some((s) => s.server_address === b.address);
      listedWhenEjected = listed;
      return !picks.includes(b.address);
    },
    10_000,
    10,
  );
  const ejectedMs = performance.now() - killedAt;
  // Ejected by its failed health check, it stays a member until etcd drops its key.
  assert.ok(listedWhenEjected, `${b.address} left the set before it left the picks`);
  await waitForServers(lb, [a.address], (TTL_S + 1) * 1_000);
  const evictedMs = performance.now() - killedAt;
  console.log(
    `after SIGKILL: out of the picks in ${ejectedMs.toFixed(0)} ms, out of the set in ${
      evictedMs.toFixed(0)
    } ms (lease TTL ${TTL_S} s)`,
  );
});

Deno.test("a new backend receives picks once it registers in etcd, through the balancer's watch (no second list)", async () => {
  await using sys = await startSystem({ etcd: true });
  const { balancer, lb, backend } = await etcdBalancer(sys, "round_robin", 1);
  const etcdClient = sys.etcdClient();
  const b = backend();
  // The moment its key is visible in etcd is the moment it registered.
  await waitFor(
    `${b.address} to register`,
    () => etcdClient.get(`/servers/${b.address}`),
    15_000,
    5,
  );
  const registeredAt = performance.now();
  await waitFor(
    `${b.address} to be picked`,
    async () => {
      const picks = [await getServer(lb), await getServer(lb)];
      return picks.includes(b.address);
    },
    10_000,
    5,
  );
  console.log(
    `first pick after registering: ${(performance.now() - registeredAt).toFixed(0)} ms`,
  );
  assert.equal(lists(balancer), 1, balancer.process.log());
});

Deno.test("a backend stopped with SIGTERM deregisters before it exits", async () => {
  await using sys = await startSystem({ etcd: true });
  const { lb, backends: [a, b] } = await etcdBalancer(sys, "round_robin", 2);
  const status = await b.process.stop();
  assert.equal(status.code, 0, b.process.log());
  // Its key is gone at once, not after the lease TTL.
  assert.equal(await sys.etcdClient().get(`/servers/${b.address}`), null);
  await waitForServers(lb, [a.address], 2_000);
});

Deno.test("an original backend's bare-address key is discovered, and RegisterServer says to use etcd", async () => {
  await using sys = await startSystem({ etcd: true });
  const { lb } = await etcdBalancer(sys, "pick_first");
  const etcdClient = sys.etcdClient();
  const original = await startBareServer(sys);
  await etcdClient.put(`/servers/${original.address}`).value(original.address);
  await etcdClient.put("/servers/garbage").value("{not json");
  await waitForServers(lb, [original.address]);
  await assert.rejects(
    unary(lb.RegisterServer, lb, { server_address: "127.0.0.1:7002" }),
    (e: grpc.ServiceError) =>
      e.code === grpc.status.FAILED_PRECONDITION &&
      /\/servers\/127\.0\.0\.1:7002/.test(e.details),
  );
  assert.deepEqual((await listServers(lb)).servers.map((s) => s.server_address), [
    original.address,
  ]);
});

Deno.test("the balancer serves its last set while etcd is down and catches up when it returns", async () => {
  await using sys = await startSystem({ etcd: true });
  const { lb, backend } = await etcdBalancer(sys, "round_robin");
  const a = backend(["--lease-ttl", "30"]);
  await waitForServers(lb, [a.address]);
  await sys.etcd.stop();
  // etcd is down: picks go on from the last known set.
  for (let i = 0; i < 5; i++) assert.equal(await getServer(lb), a.address);
  await sys.etcd.start();
  const etcdClient = sys.etcdClient();
  const joiner = await startBareServer(sys);
  await etcdClient.put(`/servers/${joiner.address}`).value(joiner.address);
  await waitForServers(lb, [a.address, joiner.address], 20_000);
});
