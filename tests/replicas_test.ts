/**
 * Several balancers on one etcd, every part a real process: each balancer registers under
 * `/balancers/`, backends report their load to every live balancer, and clients spread over the
 * balancers and fail over when theirs is killed.
 */
import { createEtcdClient } from "../lib/etcd.ts";
import { DEFAULT_BALANCER_PREFIX } from "../lib/balancer_registry.ts";
import { startEtcd } from "./_etcd.ts";
import {
  createLoadBalancerClient,
  startBackend,
  startBalancer,
  stopAll,
  waitFor,
  waitForServers,
} from "./_system.ts";

/** The balancers registered in etcd, sorted. */
async function registered(endpoint: string): Promise<string[]> {
  const client = createEtcdClient([endpoint]);
  try {
    const kvs = await client.getAll().prefix(DEFAULT_BALANCER_PREFIX).strings();
    return Object.keys(kvs).map((k) => k.slice(DEFAULT_BALANCER_PREFIX.length)).sort();
  } finally {
    client.close();
  }
}

Deno.test("each balancer registers under /balancers/ and deregisters on stop", async () => {
  const etcd = await startEtcd();
  const a = await startBalancer(["--etcd", etcd.endpoint]);
  const b = await startBalancer(["--etcd", etcd.endpoint]);
  try {
    const both = [a.address, b.address].sort();
    await waitFor(
      "both balancers registered",
      async () => (await registered(etcd.endpoint)).join() === both.join(),
      10_000,
    );
    await a.process.stop(5_000);
    await waitFor(
      "a's key deleted",
      async () => (await registered(etcd.endpoint)).join() === b.address,
      5_000,
    );
  } finally {
    await stopAll(a, b);
    await etcd.close();
  }
});

Deno.test("backends with --etcd report their load to every live balancer", async () => {
  const etcd = await startEtcd();
  const balancers = [
    await startBalancer(["--etcd", etcd.endpoint]),
    await startBalancer(["--etcd", etcd.endpoint]),
  ];
  const backends = [1, 2, 3].map(() => startBackend(["--etcd", etcd.endpoint]));
  const lbs = balancers.map((b) => createLoadBalancerClient(b.address));
  try {
    const addresses = backends.map((b) => b.address);
    for (const lb of lbs) await waitForServers(lb, addresses, 15_000, true);
  } finally {
    for (const lb of lbs) lb.close();
    await stopAll(...balancers, ...backends);
    await etcd.close();
  }
});
