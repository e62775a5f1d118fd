/**
 * The conformance suite every policy in `policies/mod.ts` must pass: what a user of any policy
 * may rely on. Each policy's own behaviour is tested in its own file.
 */
import assert from "node:assert/strict";
import { createPolicy, POLICY_NAMES } from "../policies/mod.ts";
import { contextAt, pickMany, snapshotOf } from "./_policy_helpers.ts";

const THREE = snapshotOf([{ id: 0, load: 20 }, { id: 1, load: 20 }, { id: 2, load: 20 }]);

for (const name of POLICY_NAMES) {
  Deno.test(`${name}: an empty set answers none with a reason`, () => {
    const policy = createPolicy(name);
    const empty = snapshotOf([]);
    const result = policy.pick(empty, policy.prepare(empty), contextAt());
    assert.equal(result.kind, "none");
    assert.ok(result.kind === "none" && result.reason.length > 0);
  });

  Deno.test(`${name}: every pick names a live server of the snapshot`, () => {
    const policy = createPolicy(name);
    const state = policy.prepare(THREE);
    const live = new Set(THREE.servers.map((s) => s.address));
    for (const address of pickMany(policy, THREE, state, 300)) assert.ok(live.has(address!));
  });

  Deno.test(`${name}: pick returns the snapshot's own result objects (no allocation)`, () => {
    const policy = createPolicy(name);
    const state = policy.prepare(THREE);
    for (let i = 0; i < 10; i++) {
      const result = policy.pick(THREE, state, contextAt());
      assert.ok(result.kind === "pick" && THREE.picks[result.index] === result);
    }
  });

  Deno.test(`${name}: a removed server is never picked again`, () => {
    const policy = createPolicy(name);
    const state = policy.prepare(THREE);
    pickMany(policy, THREE, state, 7);
    const without = snapshotOf([{ id: 0, load: 20 }, { id: 2, load: 20 }], 2);
    const next = policy.prepare(without, { previous: state, previousSnapshot: THREE });
    const picks = pickMany(policy, without, next, 100);
    assert.ok(!picks.includes(THREE.servers[1].address));
    assert.ok(picks.every((a) => a !== undefined));
  });

  Deno.test(`${name}: a single server gets every pick`, () => {
    const policy = createPolicy(name);
    const one = snapshotOf([{ id: 4, load: 90 }]);
    const picks = pickMany(policy, one, policy.prepare(one), 20);
    assert.deepEqual(new Set(picks), new Set([one.servers[0].address]));
  });

  Deno.test(`${name}: the same inputs give the same picks (deterministic)`, () => {
    const a = createPolicy(name);
    const b = createPolicy(name);
    assert.deepEqual(
      pickMany(a, THREE, a.prepare(THREE), 50, contextAt(0, "c", 7)),
      pickMany(b, THREE, b.prepare(THREE), 50, contextAt(0, "c", 7)),
    );
  });

  Deno.test(`${name}: servers without reports are still picked`, () => {
    const policy = createPolicy(name);
    const fresh = snapshotOf([{ id: 0 }, { id: 1 }]);
    const picks = pickMany(policy, fresh, policy.prepare(fresh), 10);
    assert.ok(picks.every((a) => a !== undefined));
  });
}
