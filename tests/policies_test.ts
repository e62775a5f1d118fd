/** Each policy's own behaviour, beyond the conformance suite. */
import assert from "node:assert/strict";
import { leastLoad, pickFirst, powerOfTwo, roundRobin } from "../policies/mod.ts";
import { contextAt, countBy, pickMany, snapshotOf } from "./_policy_helpers.ts";

const addr = (id: number) => `10.0.0.${id}:5000`;

Deno.test("roundRobin() names every server in turn", () => {
  const policy = roundRobin();
  const s = snapshotOf([{ id: 0 }, { id: 1 }, { id: 2 }]);
  assert.deepEqual(pickMany(policy, s, policy.prepare(s), 6), [0, 1, 2, 0, 1, 2].map(addr));
});

Deno.test("roundRobin() neither skips nor repeats when a server is removed mid-rotation", () => {
  const policy = roundRobin();
  const s1 = snapshotOf([{ id: 0 }, { id: 1 }, { id: 2 }, { id: 3 }]);
  const state = policy.prepare(s1);
  assert.deepEqual(pickMany(policy, s1, state, 2), [0, 1].map(addr));
  // Server 0 (already served this round) leaves: the rotation goes on with 2, 3, then wraps.
  const s2 = snapshotOf([{ id: 1 }, { id: 2 }, { id: 3 }], 2);
  const next = policy.prepare(s2, { previous: state, previousSnapshot: s1 });
  assert.deepEqual(pickMany(policy, s2, next, 4), [2, 3, 1, 2].map(addr));
});

Deno.test("roundRobin() includes a server added mid-rotation without skipping others", () => {
  const policy = roundRobin();
  const s1 = snapshotOf([{ id: 0 }, { id: 1 }, { id: 2 }]);
  const state = policy.prepare(s1);
  assert.deepEqual(pickMany(policy, s1, state, 2), [0, 1].map(addr));
  const s2 = snapshotOf([{ id: 0 }, { id: 1 }, { id: 2 }, { id: 5 }], 2);
  const next = policy.prepare(s2, { previous: state, previousSnapshot: s1 });
  assert.deepEqual(pickMany(policy, s2, next, 5), [2, 5, 0, 1, 2].map(addr));
});

Deno.test("roundRobin() continues after the server it named last is removed", () => {
  const policy = roundRobin();
  const s1 = snapshotOf([{ id: 0 }, { id: 1 }, { id: 2 }]);
  const state = policy.prepare(s1);
  pickMany(policy, s1, state, 2); // 0, 1
  const s2 = snapshotOf([{ id: 0 }, { id: 2 }], 2);
  assert.deepEqual(
    pickMany(policy, s2, policy.prepare(s2, { previous: state, previousSnapshot: s1 }), 3),
    [2, 0, 2].map(addr),
  );
});

Deno.test("pickFirst() names the earliest known server until it leaves, then the next", () => {
  const policy = pickFirst();
  const s1 = snapshotOf([{ id: 3 }, { id: 7 }, { id: 9 }]);
  assert.deepEqual(new Set(pickMany(policy, s1, policy.prepare(s1), 10)), new Set([addr(3)]));
  const s2 = snapshotOf([{ id: 7 }, { id: 9 }], 2);
  assert.deepEqual(new Set(pickMany(policy, s2, policy.prepare(s2), 10)), new Set([addr(7)]));
});

Deno.test("leastLoad() names the server with the lowest reported load", () => {
  const policy = leastLoad();
  const s = snapshotOf([{ id: 0, load: 80 }, { id: 1, load: 10 }, { id: 2, load: 50 }]);
  const result = policy.pick(s, policy.prepare(s), contextAt());
  assert.ok(result.kind === "pick" && result.server.address === addr(1));
});

Deno.test("leastLoad() counts picks since the last report, so it does not herd", () => {
  const policy = leastLoad({ pickCostPercent: 10 });
  const s = snapshotOf([{ id: 0, load: 30 }, { id: 1, load: 10 }, { id: 2, load: 20 }]);
  const counts = countBy(pickMany(policy, s, policy.prepare(s), 30));
  // The original would send all 30 to server 1; here every server gets some.
  assert.equal(counts.size, 3);
  assert.ok(counts.get(addr(1))! > counts.get(addr(0))!);
});

Deno.test("leastLoad() resets a server's pick count when a new report arrives", () => {
  const policy = leastLoad({ pickCostPercent: 10 });
  const s1 = snapshotOf([{ id: 0, load: 0, seq: 0 }, { id: 1, load: 35, seq: 0 }]);
  const state = policy.prepare(s1);
  assert.deepEqual(pickMany(policy, s1, state, 4), [0, 0, 0, 0].map(addr));
  // Server 0 reports again (still 0 %): its four picks are now part of the report, not extra.
  const s2 = snapshotOf([{ id: 0, load: 0, seq: 1 }, { id: 1, load: 35, seq: 0 }], 2);
  const next = policy.prepare(s2, { previous: state, previousSnapshot: s1 });
  assert.equal(next.picks[0], 0);
  assert.deepEqual(pickMany(policy, s2, next, 1), [addr(0)]);
});

Deno.test("leastLoad() keeps pick counts of servers whose report did not change", () => {
  const policy = leastLoad();
  const s1 = snapshotOf([{ id: 0, load: 0, seq: 0 }, { id: 1, load: 50, seq: 0 }]);
  const state = policy.prepare(s1);
  pickMany(policy, s1, state, 3);
  const s2 = snapshotOf([{ id: 0, load: 0, seq: 0 }, { id: 1, load: 40, seq: 1 }], 2);
  assert.equal(policy.prepare(s2, { previous: state, previousSnapshot: s1 }).picks[0], 3);
});

Deno.test("leastLoad() weighs reported in-flight tasks", () => {
  const policy = leastLoad({ pickCostPercent: 10 });
  const s = snapshotOf([{ id: 0, load: 40, inFlight: 5 }, { id: 1, load: 50, inFlight: 0 }]);
  const result = policy.pick(s, policy.prepare(s), contextAt());
  assert.ok(result.kind === "pick" && result.server.address === addr(1));
});

Deno.test("leastLoad() does not treat a server without reports as idle forever", () => {
  const policy = leastLoad({ pickCostPercent: 10 });
  const s = snapshotOf([{ id: 0, load: 30 }, { id: 1, load: 30 }, { id: 2 }]);
  const counts = countBy(pickMany(policy, s, policy.prepare(s), 60));
  // Assumed as loaded as the average (30 %), it gets about a third, not everything.
  assert.ok(counts.get(addr(2))! <= 25, `new server got ${counts.get(addr(2))} of 60`);
  assert.ok(counts.get(addr(2))! >= 15, `new server got ${counts.get(addr(2))} of 60`);
});

Deno.test("leastLoad() treats a stale report as unknown", () => {
  const policy = leastLoad({ staleAfterMs: 1_000 });
  // Server 0 said 0 % long ago; server 1 says 40 % now. Stale means "assume the average" (40).
  const s = snapshotOf([
    { id: 0, load: 0, reportedAtMs: 0 },
    { id: 1, load: 40, reportedAtMs: 9_500 },
  ]);
  const state = policy.prepare(s, { nowMs: 10_000 });
  const counts = countBy(pickMany(policy, s, state, 20, contextAt(10_000)));
  assert.equal(counts.get(addr(0)), 10);
  assert.equal(counts.get(addr(1)), 10);
});

Deno.test("leastLoad() rotates between equally loaded servers", () => {
  const policy = leastLoad({ pickCostPercent: 0 });
  const s = snapshotOf([{ id: 0, load: 10 }, { id: 1, load: 10 }, { id: 2, load: 10 }]);
  assert.deepEqual(pickMany(policy, s, policy.prepare(s), 6), [0, 1, 2, 0, 1, 2].map(addr));
});

Deno.test("leastLoad() rejects nonsensical options", () => {
  assert.throws(() => leastLoad({ pickCostPercent: -1 }), RangeError);
  assert.throws(() => leastLoad({ staleAfterMs: 0 }), RangeError);
});

Deno.test("leastLoad() expects a reporting server to finish tasks between reports", () => {
  const policy = leastLoad({ pickCostPercent: 10 });
  // Same load; server 0 completes 20 tasks/s, server 1 reports no rate (an original backend).
  const s = snapshotOf([{ id: 0, load: 50, qps: 20 }, { id: 1, load: 50 }]);
  const state = policy.prepare(s, { nowMs: 0 });
  assert.deepEqual(pickMany(policy, s, state, 6), [0, 1, 0, 1, 0, 1].map(addr));
  // Half a second on, server 0 has finished its three (20/s), server 1 is assumed to hold them.
  const later = policy.prepare(s, { previous: state, previousSnapshot: s, nowMs: 500 });
  assert.deepEqual(pickMany(policy, s, later, 3), [0, 0, 0].map(addr));
});

Deno.test("leastLoad() ramps a new server up over the slow start window", () => {
  const policy = leastLoad({ slowStartMs: 10_000 });
  const servers = [
    { id: 0, load: 50, addedAtMs: -100_000 },
    { id: 1, load: 50, addedAtMs: -100_000 },
    { id: 2, load: 50, addedAtMs: 0 },
  ];
  const share = (nowMs: number) => {
    const s = snapshotOf(servers);
    const counts = countBy(pickMany(policy, s, policy.prepare(s, { nowMs }), 300));
    return (counts.get(addr(2)) ?? 0) / 300;
  };
  const early = share(1_000);
  const middle = share(5_000);
  const done = share(20_000);
  assert.ok(early < middle && middle < done, `${early} < ${middle} < ${done}`);
  assert.ok(Math.abs(done - 1 / 3) < 0.02, `full share after the window: ${done}`);
});

Deno.test("powerOfTwo() never draws the same server twice and prefers the less loaded", () => {
  const policy = powerOfTwo();
  const s = snapshotOf([{ id: 0, load: 50, inFlight: 8 }, { id: 1, load: 50, inFlight: 0 }]);
  // With two servers every draw holds both: the idle one wins until it is as busy.
  assert.deepEqual(
    pickMany(policy, s, policy.prepare(s), 8, contextAt(0, "c", 3)),
    Array(8).fill(addr(1)),
  );
});

Deno.test("powerOfTwo() spreads evenly over equal servers and away from a busy one", () => {
  const policy = powerOfTwo();
  const servers = Array.from({ length: 10 }, (_, id) => ({ id, load: 50, inFlight: 0 }));
  servers[9] = { id: 9, load: 90, inFlight: 500 };
  const s = snapshotOf(servers);
  // 2,700 picks: about 300 each, still far below the busy server's 500 in flight.
  const counts = countBy(pickMany(policy, s, policy.prepare(s), 2_700, contextAt(0, "c", 5)));
  assert.equal(counts.get(addr(9)) ?? 0, 0);
  for (let id = 0; id < 9; id++) {
    const share = counts.get(addr(id))! / 2_700;
    assert.ok(Math.abs(share - 1 / 9) < 0.01, `server ${id}: ${share}`);
  }
});

Deno.test("powerOfTwo() slow-starts a new server", () => {
  const policy = powerOfTwo({ slowStartMs: 10_000 });
  const s = snapshotOf([
    { id: 0, load: 50, addedAtMs: -100_000 },
    { id: 1, load: 50, addedAtMs: -100_000 },
    { id: 2, load: 50, addedAtMs: 0 },
  ]);
  const counts = countBy(
    pickMany(policy, s, policy.prepare(s, { nowMs: 1_000 }), 3_000, contextAt(1_000, "c", 9)),
  );
  assert.ok(counts.get(addr(2))! < 0.1 * 3_000, `new server got ${counts.get(addr(2))}`);
});
