/**
 * The policy the balancers share through etcd (`lib/etcd/shared_policy.ts`), with real balancers and
 * a real etcd: `SetPolicy` on one switches them all, a balancer started later takes it over its
 * `--policy`, a value that is not a policy is ignored, and with etcd down `SetPolicy` answers
 * UNAVAILABLE and changes nothing.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { createEtcdClient } from "../lib/etcd/etcd_client.ts";
import { unary } from "../lib/wire/proto.ts";
import { DEFAULT_POLICY_KEY } from "../lib/etcd/shared_policy.ts";
import { startEtcd } from "./_etcd.ts";
import {
  createLoadBalancerClient,
  listServers,
  startBalancer,
  type Started,
  stopAll,
  waitFor,
} from "./_system.ts";

/** The policy `balancer` runs, from ListServers. */
async function policyOf(balancer: Started): Promise<string> {
  const lb = createLoadBalancerClient(balancer.address);
  try {
    return (await listServers(lb)).policy;
  } finally {
    lb.close();
  }
}

/** Calls SetPolicy on `balancer`. */
async function setPolicy(balancer: Started, policy: string) {
  const lb = createLoadBalancerClient(balancer.address);
  try {
    return await unary(lb.SetPolicy, lb, { policy }, { deadline: Date.now() + 10_000 });
  } finally {
    lb.close();
  }
}

Deno.test("SetPolicy on one balancer switches every balancer on the same etcd, and a balancer started later takes the shared policy", async () => {
  const etcd = await startEtcd();
  const started: Started[] = [];
  const client = createEtcdClient([etcd.endpoint]);
  try {
    const args = ["--etcd", etcd.endpoint, "--policy", "round_robin"];
    const [a, b] = [await startBalancer(args), await startBalancer(args)];
    started.push(a, b);
    assert.equal(await setPolicy(a, "least_load").then((r) => r.previous), "round_robin");
    assert.equal(await client.get(DEFAULT_POLICY_KEY).string(), "least_load");
    await waitFor("b to switch", async () => await policyOf(b) === "least_load", 10_000);
    assert.match(b.process.log(), /Policy least_load shared by the balancers/);

    // Started with its own --policy: the shared one wins.
    const c = await startBalancer(args);
    started.push(c);
    assert.equal(await policyOf(c), "least_load");

    // Not a policy name: every balancer keeps least_load, and says why.
    await client.put(DEFAULT_POLICY_KEY).value("no_such_policy");
    await waitFor("the warning", () => a.process.log().includes("no_such_policy"), 10_000);
    for (const balancer of [a, b, c]) assert.equal(await policyOf(balancer), "least_load");

    // A bad name through SetPolicy is refused before anything is written.
    await assert.rejects(
      setPolicy(b, "nope"),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT,
    );
    assert.equal(await client.get(DEFAULT_POLICY_KEY).string(), "no_such_policy");

    // And from another balancer, the other way.
    await setPolicy(c, "power_of_two");
    for (const balancer of [a, b, c]) {
      await waitFor("power_of_two", async () => await policyOf(balancer) === "power_of_two");
    }
  } finally {
    client.close();
    await stopAll(...started);
    await etcd.close();
  }
});

Deno.test("with etcd down, SetPolicy answers UNAVAILABLE and the balancer keeps its policy", async () => {
  const etcd = await startEtcd();
  const a = await startBalancer(["--etcd", etcd.endpoint, "--policy", "round_robin"]);
  try {
    await etcd.stop();
    await assert.rejects(
      setPolicy(a, "least_load"),
      (e: grpc.ServiceError) =>
        e.code === grpc.status.UNAVAILABLE && /nothing changed/.test(e.details),
    );
    assert.equal(await policyOf(a), "round_robin");
    // Back: it works again, and the key holds it.
    await etcd.start();
    await waitFor(
      "SetPolicy to work again",
      async () => (await setPolicy(a, "least_load").catch(() => undefined)) !== undefined,
      20_000,
      500,
    );
    assert.equal(await policyOf(a), "least_load");
  } finally {
    await stopAll(a);
    await etcd.close();
  }
});
