/**
 * Load-aware policies under several balancer replicas (pure): each replica sees only its own
 * picks between two reports, so each counts them `replicas` times; replicas that see the same
 * reports then split the traffic instead of all sending it to the server that looked idlest.
 */
import assert from "node:assert/strict";
import { leastLoad, powerOfTwo } from "../policies/mod.ts";
import type { Policy, Snapshot } from "../policies/types.ts";
import { Picker } from "../lib/picking/picker.ts";
import { ServerSet } from "../lib/picking/server_set.ts";
import { contextAt, countBy, pickMany, snapshotOf } from "./_policy_helpers.ts";

const IDLE = "10.0.0.0:5000";
const BUSY = "10.0.0.1:5000";

/** Picks of `replicas` balancers, `each` picks apiece, all from the same report. */
function picksOfReplicas<S>(
  policy: Policy<S>,
  snapshot: Snapshot,
  replicas: number,
  assumed: number,
  each: number,
): string[] {
  const out: string[] = [];
  for (let r = 0; r < replicas; r++) {
    const state = policy.prepare(snapshot, { replicas: assumed });
    out.push(...pickMany(policy, snapshot, state, each, contextAt(0, "c", r + 1)) as string[]);
  }
  return out;
}

Deno.test("leastLoad(): two replicas counting only their own picks herd onto the idle server; counting them twice splits the traffic", () => {
  const policy = leastLoad({ pickCostPercent: 10 });
  const s = snapshotOf([{ id: 0, load: 10 }, { id: 1, load: 60 }]);
  // Ideal for 10 picks: 7.5 on the idle server and 2.5 on the busy one (both end at 85 %).
  const naive = countBy(picksOfReplicas(policy, s, 2, 1, 5));
  const aware = countBy(picksOfReplicas(policy, s, 2, 2, 5));
  assert.deepEqual(naive, new Map([[IDLE, 10]]));
  assert.deepEqual(aware, new Map([[IDLE, 8], [BUSY, 2]]));
  const cpu = (c: Map<string | undefined, number>) => [
    10 + 10 * (c.get(IDLE) ?? 0),
    60 + 10 * (c.get(BUSY) ?? 0),
  ];
  console.log(
    `[replicas] least_load, 2 replicas x 5 picks from one report: own picks once -> loads ` +
      `${cpu(naive).join(" / ")} %; counted twice -> ${cpu(aware).join(" / ")} %`,
  );
});

Deno.test("leastLoad(): an own pick weighs `replicas` tasks when made and after the next refresh; a reported task weighs one whatever the replicas", () => {
  const policy = leastLoad({ pickCostPercent: 10 });
  const s = snapshotOf([{ id: 0, load: 20, inFlight: 2 }, { id: 1, load: 50, inFlight: 0 }]);
  for (const replicas of [1, 3]) {
    const state = policy.prepare(s, { replicas });
    // Reported: 20 % + 2 tasks x 10 points, and 50 % with none, however many replicas.
    assert.deepEqual([...state.key], [40, 50]);
    pickMany(policy, s, state, 1);
    assert.deepEqual([...state.key], [40 + 10 * replicas, 50]);
    const next = policy.prepare(s, { previous: state, previousSnapshot: s, replicas });
    assert.deepEqual([...next.key], [...state.key], `${replicas} replicas: same after a refresh`);
  }
});

Deno.test("powerOfTwo(): each own pick adds `replicas` tasks, in the pick and in the next estimate", () => {
  const policy = powerOfTwo();
  const s = snapshotOf([{ id: 0, load: 50, inFlight: 2 }, { id: 1, load: 50, inFlight: 3 }]);
  const state = policy.prepare(s, { replicas: 3 });
  pickMany(policy, s, state, 4);
  const sum = (a: Float64Array) => a.reduce((x, y) => x + y, 0);
  assert.equal(sum(state.outstanding), 5 + 4 * 3);
  const next = policy.prepare(s, { previous: state, previousSnapshot: s, replicas: 3 });
  assert.equal(sum(next.outstanding), 5 + 4 * 3);
  // One replica (the default) counts each pick once, as before.
  const alone = policy.prepare(s);
  pickMany(policy, s, alone, 4);
  assert.equal(sum(alone.outstanding), 5 + 4);
});

Deno.test("Picker.setReplicas() hands the count to the policy (at least 1)", () => {
  const set = new ServerSet(() => 0);
  set.add(IDLE);
  set.report(IDLE, { cpuLoad: 10, inFlight: 0 });
  set.flush();
  const picker = new Picker(powerOfTwo(), set, () => 0);
  try {
    picker.setReplicas(2);
    assert.equal(picker.replicas, 2);
    picker.pick("c");
    picker.setReplicas(0);
    assert.equal(picker.replicas, 1);
  } finally {
    picker.close();
  }
});
