/**
 * The policy the balancers share through etcd (`lib/etcd/shared_policy.ts`), with real balancers and
 * a real etcd: `SetPolicy` on one switches them all, a balancer started later takes it over its
 * `--policy`, a value that is not a policy is ignored, and with etcd down `SetPolicy` answers
 * UNAVAILABLE and changes nothing.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { createLoadBalancerClient, unary } from "../lib/wire/proto.ts";
import { DEFAULT_POLICY_KEY } from "../lib/etcd/shared_policy.ts";
import { startSystem } from "./_harness.ts";
import { listServers, type Started, waitFor } from "./_system.ts";

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
  await using sys = await startSystem({ etcd: true });
  const client = sys.etcdClient();
  const args = sys.onEtcd("--policy", "round_robin");
  const [a, b] = [await sys.balancer(args), await sys.balancer(args)];
  assert.equal(await setPolicy(a, "least_load").then((r) => r.previous), "round_robin");
  assert.equal(await client.get(DEFAULT_POLICY_KEY).string(), "least_load");
  await waitFor("b to switch", async () => await policyOf(b) === "least_load", 10_000);
  assert.match(b.process.log(), /Policy least_load shared by the balancers/);

  // Started with its own --policy: the shared one wins.
  const c = await sys.balancer(args);
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
});

Deno.test("with etcd down, SetPolicy answers UNAVAILABLE and the balancer keeps its policy", async () => {
  await using sys = await startSystem({ etcd: true });
  const a = await sys.balancer(sys.onEtcd("--policy", "round_robin"));
  await sys.etcd.stop();
  await assert.rejects(
    setPolicy(a, "least_load"),
    (e: grpc.ServiceError) =>
      e.code === grpc.status.UNAVAILABLE && /nothing changed/.test(e.details),
  );
  assert.equal(await policyOf(a), "round_robin");
  // Back: it works again, and the key holds it.
  await sys.etcd.start();
  await waitFor(
    "SetPolicy to work again",
    async () => (await setPolicy(a, "least_load").catch(() => undefined)) !== undefined,
    20_000,
    500,
  );
  assert.equal(await policyOf(a), "least_load");
});
