/** Changing the policy of a running balancer, and reading what it is doing. */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { unary } from "../lib/wire/proto.ts";
import { POLICY_NAMES } from "../policies/mod.ts";
import { startSystem } from "./_harness.ts";
import { listServers } from "./_system.ts";

Deno.test("SetPolicy switches a running balancer's policy, logs it, and picks go on", async () => {
  await using sys = await startSystem();
  const { balancer, backends: [a, b], lb } = await sys.balancerWithBackends({
    balancerArgs: ["--policy", "round_robin"],
    backends: 2,
    withLoad: true,
  });
  for (const policy of POLICY_NAMES) {
    const set = sys.spawn("client", ["--balancer", balancer.address, "--set-policy", policy], {
      captureStdout: true,
    });
    assert.equal((await set.status).code, 0, set.log());
    assert.match(set.stdout(), new RegExp(`-> ${policy}`));
    assert.equal((await listServers(lb)).policy, policy);
    const named = await unary(lb.GetServer, lb, { client_id: "after-switch" });
    assert.ok([a.address, b.address].includes(named.server_address));
  }
  assert.match(balancer.process.log(), /Policy changed from round_robin to pick_first/);

  await assert.rejects(
    unary(lb.SetPolicy, lb, { policy: "fastest" }),
    (e: grpc.ServiceError) =>
      e.code === grpc.status.INVALID_ARGUMENT &&
      /policy must be one of round_robin/.test(e.details),
  );
  assert.equal((await listServers(lb)).policy, POLICY_NAMES[POLICY_NAMES.length - 1]);

  const list = sys.spawn("client", ["--balancer", balancer.address, "--list", "--json"], {
    captureStdout: true,
  });
  assert.equal((await list.status).code, 0, list.log());
  const listed = JSON.parse(list.stdout());
  assert.deepEqual(
    listed.servers.map((s: { server_address: string }) => s.server_address).sort(),
    [a.address, b.address].sort(),
  );
  for (const s of listed.servers) assert.ok(s.weight > 0 && s.has_load);
});
