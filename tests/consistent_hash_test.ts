/** `consistent_hash`: stickiness, spread, and how many clients move when membership changes. */
import assert from "node:assert/strict";
import {
  consistentHash,
  type ConsistentHashState,
  DEFAULT_POINTS_PER_SERVER,
} from "../policies/consistent_hash.ts";
import type { Snapshot } from "../policies/types.ts";
import { contextAt, countBy, pickMany, snapshotOf, type TestServer } from "./_policy_helpers.ts";

const CLIENTS = Array.from({ length: 10_000 }, (_, i) => `client-${i}`);

/** Servers with ids `ids`, addressed by id unless `address` says otherwise. */
function servers(ids: number[], address = (id: number) => `10.0.0.${id}:5000`): TestServer[] {
  return ids.map((id) => ({ id, address: address(id), load: 20 }));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/** The address each client id lands on. */
function assign(snapshot: Snapshot, state: ConsistentHashState): (string | undefined)[] {
  const policy = consistentHash();
  return CLIENTS.map((clientId) => {
    const result = policy.pick(snapshot, state, contextAt(0, clientId));
    return result.kind === "pick" ? result.server.address : undefined;
  });
}

Deno.test("consistentHash() sends the same client id to the same server on every pick", () => {
  const policy = consistentHash();
  const s = snapshotOf(servers(range(0, 10)));
  const state = policy.prepare(s);
  for (const clientId of CLIENTS.slice(0, 200)) {
    const picks = pickMany(policy, s, state, 20, contextAt(0, clientId));
    assert.equal(new Set(picks).size, 1);
    assert.ok(picks[0] !== undefined);
  }
});

Deno.test("consistentHash() keeps the ring and every client's server when only load changes", () => {
  const policy = consistentHash();
  const s1 = snapshotOf(servers(range(0, 10)));
  const state = policy.prepare(s1);
  // A load report: a new snapshot object with the same servers.
  const s2 = snapshotOf(range(0, 10).map((id) => ({ id, load: 90 - id, seq: 1 })), 2);
  const next = policy.prepare(s2, { previous: state, previousSnapshot: s1 });
  assert.equal(next, state);
  // A timer refresh: the same snapshot again.
  assert.equal(policy.prepare(s2, { previous: next, previousSnapshot: s2 }), state);
  assert.deepEqual(assign(s2, next), assign(s1, state));
});

Deno.test("consistentHash() keeps the ring and remaps indices when ids change but addresses do not", () => {
  const policy = consistentHash();
  const s1 = snapshotOf(servers([0, 1, 2, 3]));
  const state = policy.prepare(s1);
  // Server 1 re-registered as id 9: same addresses, another order in `servers`.
  const s2 = snapshotOf(servers([0, 2, 3, 9], (id) => `10.0.0.${id === 9 ? 1 : id}:5000`), 2);
  const next = policy.prepare(s2, { previous: state, previousSnapshot: s1 });
  assert.equal(next.points, state.points);
  assert.notDeepEqual(next.owners, state.owners);
  assert.deepEqual(assign(s2, next), assign(s1, state));
});

Deno.test("consistentHash() spreads 10,000 client ids over 10 servers within 7% to 13% each", () => {
  const policy = consistentHash();
  const s = snapshotOf(servers(range(0, 10)));
  const counts = countBy(assign(s, policy.prepare(s)));
  assert.equal(counts.size, 10);
  const shares = [...counts.values()].map((count) => count / CLIENTS.length);
  console.log(`shares of 10 servers: ${shares.map((x) => (x * 100).toFixed(1) + "%").join(" ")}`);
  for (const share of shares) assert.ok(share >= 0.07 && share <= 0.13, `share ${share}`);
});

Deno.test("consistentHash() moves about 1/11 of the clients, all to the new server, when an 11th joins", () => {
  const policy = consistentHash();
  const s1 = snapshotOf(servers(range(0, 10)));
  const state = policy.prepare(s1);
  const s2 = snapshotOf(servers(range(0, 11)), 2);
  const next = policy.prepare(s2, { previous: state, previousSnapshot: s1 });
  const before = assign(s1, state);
  const after = assign(s2, next);
  let moved = 0;
  for (let i = 0; i < CLIENTS.length; i++) {
    if (after[i] === before[i]) continue;
    moved++;
    assert.equal(after[i], s2.servers[10].address, `${CLIENTS[i]} moved between old servers`);
  }
  const fraction = moved / CLIENTS.length;
  console.log(
    `10 -> 11 servers: moved ${moved} of 10,000 = ${fraction.toFixed(4)} (1/11 = 0.0909)`,
  );
  assert.ok(fraction >= 0.5 / 11 && fraction <= 1.5 / 11, `moved ${fraction}`);
});

Deno.test("consistentHash() moves only the clients of a server that leaves", () => {
  const policy = consistentHash();
  const s1 = snapshotOf(servers(range(0, 10)));
  const state = policy.prepare(s1);
  const gone = s1.servers[4].address;
  const s2 = snapshotOf(servers([0, 1, 2, 3, 5, 6, 7, 8, 9]), 2);
  const next = policy.prepare(s2, { previous: state, previousSnapshot: s1 });
  const before = assign(s1, state);
  const after = assign(s2, next);
  let moved = 0;
  for (let i = 0; i < CLIENTS.length; i++) {
    if (before[i] === gone) {
      assert.ok(after[i] !== gone && after[i] !== undefined);
      moved++;
    } else {
      assert.equal(after[i], before[i], `${CLIENTS[i]} moved off a server that stayed`);
    }
  }
  const fraction = moved / CLIENTS.length;
  console.log(`10 -> 9 servers: moved ${moved} of 10,000 = ${fraction.toFixed(4)} (1/10 = 0.1)`);
  assert.ok(moved > 0);
});

Deno.test("consistentHash() gives a server that leaves and returns with a new id its clients back", () => {
  const policy = consistentHash();
  const s1 = snapshotOf(servers(range(0, 10)));
  const state = policy.prepare(s1);
  const s2 = snapshotOf(servers([0, 1, 2, 4, 5, 6, 7, 8, 9]), 2);
  const without = policy.prepare(s2, { previous: state, previousSnapshot: s1 });
  const s3 = snapshotOf(
    servers(
      [...range(0, 10), 12].filter((id) => id !== 3),
      (id) => `10.0.0.${id === 12 ? 3 : id}:5000`,
    ),
    3,
  );
  const back = policy.prepare(s3, { previous: without, previousSnapshot: s2 });
  assert.deepEqual(assign(s3, back), assign(s1, state));
});

Deno.test("consistentHash() agrees across balancers that know the same addresses in another id order", () => {
  const a = consistentHash();
  const b = consistentHash();
  const sa = snapshotOf(servers(range(0, 10), (id) => `backend-${id}.internal:7000`));
  const sb = snapshotOf(servers(range(0, 10), (id) => `backend-${9 - id}.internal:7000`));
  assert.deepEqual(assign(sb, b.prepare(sb)), assign(sa, a.prepare(sa)));
});

Deno.test("consistentHash() answers none for an empty set, also after the last server leaves", () => {
  const policy = consistentHash();
  const empty = snapshotOf([]);
  assert.equal(policy.pick(empty, policy.prepare(empty), contextAt()).kind, "none");
  const one = snapshotOf(servers([1]));
  const state = policy.prepare(one);
  const emptied = snapshotOf([], 2);
  const next = policy.prepare(emptied, { previous: state, previousSnapshot: one });
  assert.equal(policy.pick(emptied, next, contextAt()).kind, "none");
});

Deno.test("consistentHash() sends every client to a single server", () => {
  const policy = consistentHash();
  const one = snapshotOf(servers([7]));
  assert.deepEqual(new Set(assign(one, policy.prepare(one))), new Set(["10.0.0.7:5000"]));
});

Deno.test("consistentHash() hashes an empty client id like any other: all go to one server", () => {
  const policy = consistentHash();
  const s = snapshotOf(servers(range(0, 10)));
  const picks = pickMany(policy, s, policy.prepare(s), 50, contextAt(0, ""));
  assert.equal(new Set(picks).size, 1);
  assert.ok(picks[0] !== undefined);
});

Deno.test("consistentHash() puts pointsPerServer points per server, capped by maxRingSize", () => {
  const policy = consistentHash();
  for (const n of [1, 2, 3, 10, 11, 100, 1_000]) {
    const state = policy.prepare(snapshotOf(servers(range(0, n))));
    assert.equal(state.points.length, n * DEFAULT_POINTS_PER_SERVER, `${n} servers`);
    for (let j = 1; j < state.points.length; j++) assert.ok(state.points[j - 1] <= state.points[j]);
  }
  const capped = consistentHash({ pointsPerServer: 64, maxRingSize: 100 });
  for (const n of [1, 3, 50, 99]) {
    const size = capped.prepare(snapshotOf(servers(range(0, n)))).points.length;
    assert.ok(size <= 100 && size >= n, `${n} servers: ${size} points`);
  }
  // More servers than maxRingSize: one point each, so every server can still be picked.
  assert.equal(capped.prepare(snapshotOf(servers(range(0, 150)))).points.length, 150);
});

Deno.test("consistentHash() rejects bad ring sizes with a RangeError naming the option", () => {
  assert.throws(() => consistentHash({ pointsPerServer: 0 }), {
    name: "RangeError",
    message:
      "Cannot create consistent_hash as 'pointsPerServer' must be an integer from 1 to 65536: current value is 0",
  });
  assert.throws(() => consistentHash({ pointsPerServer: 1.5 }), RangeError);
  assert.throws(() => consistentHash({ pointsPerServer: NaN }), RangeError);
  assert.throws(() => consistentHash({ maxRingSize: 0 }), RangeError);
  assert.throws(() => consistentHash({ maxRingSize: 8_388_609 }), RangeError);
});
