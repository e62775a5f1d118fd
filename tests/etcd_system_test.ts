/**
 * The whole system on a real etcd, every part a real process: ejection and eviction of a killed backend,
 * a new backend's first picks, graceful deregistration, and etcd outages.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { createEtcdClient } from "../lib/etcd/etcd_client.ts";
import { createLoadBalancerClient, type LoadBalancerClient, unary } from "../lib/wire/proto.ts";
import { bindServer, createServer, shutdownServer } from "../lib/wire/grpc_server.ts";
import { startEtcd } from "./_etcd.ts";
import {
  listServers,
  startBackend,
  startBalancer,
  type Started,
  stopAll,
  waitFor,
  waitForServers,
} from "./_system.ts";

const TTL_S = 2;

/** Runs `body` with a fresh etcd, a balancer watching it, and a client of that balancer. */
async function withSystem(
  policy: string,
  body: (ctx: {
    etcd: Awaited<ReturnType<typeof startEtcd>>;
    balancer: Started;
    lb: LoadBalancerClient;
    backend: (extra?: string[]) => Started;
  }) => Promise<void>,
): Promise<void> {
  const etcd = await startEtcd();
  const started: Started[] = [];
  let balancer: Started | undefined;
  let lb: LoadBalancerClient | undefined;
  try {
    balancer = await startBalancer(["--etcd", etcd.endpoint, "--policy", policy]);
    lb = createLoadBalancerClient(balancer.address);
    const backend = (extra: string[] = []) => {
      const b = startBackend(["--etcd", etcd.endpoint, "--lease-ttl", String(TTL_S), ...extra]);
      started.push(b);
      return b;
    };
    await body({ etcd, balancer, lb, backend });
  } finally {
    lb?.close();
    await stopAll(balancer, ...started);
    await etcd.close();
  }
}

/**
 * A gRPC server with no service at all, as an original backend looks to the balancer's health
 * check (UNIMPLEMENTED: alive, so healthy).
 */
async function startBareServer(): Promise<{ address: string; stop: () => Promise<void> }> {
  const server = createServer();
  const port = await bindServer(server, "127.0.0.1", 0);
  return { address: `127.0.0.1:${port}`, stop: () => shutdownServer(server, 1_000) };
}

async function getServer(lb: LoadBalancerClient): Promise<string> {
  const r = await unary(lb.GetServer, lb, { client_id: "t" }, { deadline: Date.now() + 2_000 });
  return r.server_address;
}

Deno.test("a backend killed with SIGKILL leaves the picks within one second, and the set after its lease TTL", async () => {
  await withSystem("round_robin", async ({ lb, backend }) => {
    const a = backend();
    const b = backend();
    await waitForServers(lb, [a.address, b.address]);
    b.process.signal("SIGKILL");
    await b.process.status;
    const killedAt = performance.now();
    // Polls picks themselves: round robin over two servers names b within two picks while live.
    await waitFor(
      `${b.address} to leave the picks`,
      async () => {
        const picks = [await getServer(lb), await getServer(lb)];
        return !picks.includes(b.address);
      },
      1_000,
      10,
    );
    const ejectedMs = performance.now() - killedAt;
    // Ejected by its failed health check, it stays a member until etcd drops its key.
    await waitForServers(lb, [a.address], (TTL_S + 1) * 1_000);
    const evictedMs = performance.now() - killedAt;
    console.log(
      `after SIGKILL: out of the picks in ${ejectedMs.toFixed(0)} ms, out of the set in ${
        evictedMs.toFixed(0)
      } ms (lease TTL ${TTL_S} s)`,
    );
  });
});

Deno.test("a new backend receives picks within one second of registering in etcd", async () => {
  await withSystem("round_robin", async ({ etcd, lb, backend }) => {
    const a = backend();
    await waitForServers(lb, [a.address]);
    const etcdClient = createEtcdClient([etcd.endpoint]);
    try {
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
        1_000,
        5,
      );
      console.log(
        `first pick after registering: ${(performance.now() - registeredAt).toFixed(0)} ms`,
      );
    } finally {
      etcdClient.close();
    }
  });
});

Deno.test("a backend stopped with SIGTERM deregisters before it exits", async () => {
  await withSystem("round_robin", async ({ etcd, lb, backend }) => {
    const a = backend();
    const b = backend();
    await waitForServers(lb, [a.address, b.address]);
    const status = await b.process.stop();
    assert.equal(status.code, 0, b.process.log());
    const etcdClient = createEtcdClient([etcd.endpoint]);
    try {
      // Its key is gone at once, not after the lease TTL.
      assert.equal(await etcdClient.get(`/servers/${b.address}`), null);
    } finally {
      etcdClient.close();
    }
    await waitForServers(lb, [a.address], 2_000);
  });
});

Deno.test("an original backend's bare-address key is discovered, and RegisterServer says to use etcd", async () => {
  await withSystem("pick_first", async ({ etcd, lb }) => {
    const etcdClient = createEtcdClient([etcd.endpoint]);
    const original = await startBareServer();
    try {
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
    } finally {
      etcdClient.close();
      await original.stop();
    }
  });
});

Deno.test("the balancer serves its last set while etcd is down and catches up when it returns", async () => {
  await withSystem("round_robin", async ({ etcd, lb, backend }) => {
    const a = backend(["--lease-ttl", "30"]);
    await waitForServers(lb, [a.address]);
    await etcd.stop();
    // etcd is down: picks go on from the last known set.
    for (let i = 0; i < 5; i++) assert.equal(await getServer(lb), a.address);
    await etcd.start();
    const etcdClient = createEtcdClient([etcd.endpoint]);
    const joiner = await startBareServer();
    try {
      await etcdClient.put(`/servers/${joiner.address}`).value(joiner.address);
      await waitForServers(lb, [a.address, joiner.address], 20_000);
    } finally {
      etcdClient.close();
      await joiner.stop();
    }
  });
});
