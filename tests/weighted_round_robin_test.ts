/**
 * `weighted_round_robin` on plain values: weights from qps and CPU, blackout, expiration, errors,
 * the round robin fallback, slow start and options. The clock is a number passed to `prepare`.
 */
import assert from "node:assert/strict";
import type { Snapshot } from "../policies/types.ts";
import {
  weightedRoundRobin,
  type WeightedRoundRobinOptions,
  type WeightedRoundRobinState,
} from "../policies/weighted_round_robin.ts";
import { countBy, pickMany, seededRandom, snapshotOf } from "./_policy_helpers.ts";

const addr = (id: number) => `10.0.0.${id}:5000`;

/** Prepares `snapshot` at `nowMs`, carrying over from `previous` (built for `before`). */
function prepareAt(
  policy: ReturnType<typeof weightedRoundRobin>,
  snapshot: Snapshot,
  nowMs: number,
  previous?: WeightedRoundRobinState,
  before?: Snapshot,
): WeightedRoundRobinState {
  return policy.prepare(snapshot, {
    nowMs,
    rng: seededRandom(nowMs + 1),
    previous,
    previousSnapshot: before,
  });
}

/** Picks for whole rounds of `total` and returns the count of each server by id. */
function picksById(
  policy: ReturnType<typeof weightedRoundRobin>,
  snapshot: Snapshot,
  state: WeightedRoundRobinState,
  count: number,
): number[] {
  const counts = countBy(pickMany(policy, snapshot, state, count));
  return snapshot.servers.map((s) => counts.get(s.address) ?? 0);
}

/** Asserts each count is within one pick of the expected one. */
function assertAbout(actual: number[], expected: number[]): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((a, i) =>
    assert.ok(Math.abs(a - expected[i]) <= 1, `got ${actual}, expected ${expected}`)
  );
}

/** Asserts weights close to the expected ones. */
function assertWeights(actual: number[], expected: number[]): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((w, i) =>
    assert.ok(Math.abs(w - expected[i]) < 1e-9, `got ${actual}, expected ${expected}`)
  );
}

Deno.test("weightedRoundRobin() gives twice the picks to twice the qps per CPU, after blackout", () => {
  const policy = weightedRoundRobin();
  // Weight = qps / utilization: 100 / 0.5 = 200 and 200 / 0.5 = 400. Both just became known.
  const s = snapshotOf([
    { id: 0, load: 50, qps: 100, addedAtMs: 0 },
    { id: 1, load: 50, qps: 200, addedAtMs: 0 },
  ]);
  const early = prepareAt(policy, s, 0);
  assertAbout(picksById(policy, s, early, 300), [150, 150]);
  const almost = prepareAt(policy, s, 9_999, early, s);
  assertAbout(picksById(policy, s, almost, 300), [150, 150]);
  const after = prepareAt(policy, s, 10_000, almost, s);
  assertAbout(picksById(policy, s, after, 300), [100, 200]);
});

Deno.test("weightedRoundRobin() gives a new server the mean weight during its blackout", () => {
  const policy = weightedRoundRobin({ slowStartMs: 0 }); // blackout alone
  const s1 = snapshotOf([{ id: 0, load: 50, qps: 100 }, { id: 1, load: 25, qps: 100 }]);
  const settled = prepareAt(policy, s1, 10_000, prepareAt(policy, s1, 0), s1);
  // Server 2 would weigh 10,000 (1,000 qps at 10 % CPU), but it just arrived.
  const s2 = snapshotOf([
    { id: 0, load: 50, qps: 100 },
    { id: 1, load: 25, qps: 100 },
    { id: 2, load: 10, qps: 1_000, reportedAtMs: 12_000, addedAtMs: 12_000 },
  ], 2);
  const blackout = prepareAt(policy, s2, 12_000, settled, s1);
  assertAbout(picksById(policy, s2, blackout, 900), [200, 400, 300]);
  assertWeights(policy.weights!(s2, blackout, 12_000), [2 / 3, 4 / 3, 1]);
  const trusted = prepareAt(policy, s2, 22_000, blackout, s2);
  assertAbout(picksById(policy, s2, trusted, 1_060), [20, 40, 1_000]);
});

Deno.test("weightedRoundRobin() carries blackout tracking over by id as servers join and leave", () => {
  const policy = weightedRoundRobin({ slowStartMs: 0 }); // blackout alone
  const s1 = snapshotOf([
    { id: 0, load: 50, qps: 100 },
    { id: 1, load: 25, qps: 100 },
    { id: 2, load: 10, qps: 100 },
  ]);
  const first = prepareAt(policy, s1, 0);
  // Server 0 leaves, server 5 joins: 1 and 2 keep their streak from 0, 5 starts one now.
  const s2 = snapshotOf([
    { id: 1, load: 25, qps: 100 },
    { id: 2, load: 10, qps: 100 },
    { id: 5, load: 50, qps: 100, addedAtMs: 10_000 },
  ], 2);
  const next = prepareAt(policy, s2, 10_000, first, s1);
  // Trusted: 400 and 1,000; server 5 gets their mean, 700.
  assertAbout(picksById(policy, s2, next, 2_100), [400, 1_000, 700]);
  assert.ok(!pickMany(policy, s2, next, 100).includes(addr(0)));
});

Deno.test("weightedRoundRobin() falls back to the mean for an expired weight, then blacks it out", () => {
  const policy = weightedRoundRobin();
  const s1 = snapshotOf([
    { id: 0, load: 50, qps: 100 },
    { id: 1, load: 25, qps: 100 },
    { id: 2, load: 10, qps: 100 },
  ]);
  const settled = prepareAt(policy, s1, 10_000, prepareAt(policy, s1, 0), s1);
  assertAbout(picksById(policy, s1, settled, 1_600), [200, 400, 1_000]);
  // Servers 0 and 1 keep reporting; server 2's last report is now 185 s old (limit 180 s).
  const s2 = snapshotOf([
    { id: 0, load: 50, qps: 100, reportedAtMs: 185_000 },
    { id: 1, load: 25, qps: 100, reportedAtMs: 185_000 },
    { id: 2, load: 10, qps: 100, reportedAtMs: 0 },
  ], 2);
  const expired = prepareAt(policy, s2, 185_000, settled, s1);
  assertAbout(picksById(policy, s2, expired, 900), [200, 400, 300]);
  // It reports again: its weight is trusted only after a new blackout period.
  const s3 = snapshotOf([
    { id: 0, load: 50, qps: 100, reportedAtMs: 186_000 },
    { id: 1, load: 25, qps: 100, reportedAtMs: 186_000 },
    { id: 2, load: 10, qps: 100, reportedAtMs: 186_000 },
  ], 3);
  const back = prepareAt(policy, s3, 186_000, expired, s2);
  assertAbout(picksById(policy, s3, back, 900), [200, 400, 300]);
  const trusted = prepareAt(policy, s3, 196_000, back, s3);
  assertAbout(picksById(policy, s3, trusted, 1_600), [200, 400, 1_000]);
});

Deno.test("weightedRoundRobin() lowers the weight of a server that fails", () => {
  // 50 errors per 100 successes at 50 % CPU: 100 / (0.5 + 0.5 * 1) = 100, against 200.
  const servers = [{ id: 0, load: 50, qps: 100 }, { id: 1, load: 50, qps: 100, eps: 50 }];
  const s = snapshotOf(servers);
  const policy = weightedRoundRobin();
  const state = prepareAt(policy, s, 10_000, prepareAt(policy, s, 0), s);
  assertAbout(picksById(policy, s, state, 300), [200, 100]);
  // A penalty of 0 ignores errors.
  const lenient = weightedRoundRobin({ errorUtilizationPenalty: 0 });
  const same = prepareAt(lenient, s, 10_000, prepareAt(lenient, s, 0), s);
  assertAbout(picksById(lenient, s, same, 300), [150, 150]);
});

Deno.test("weightedRoundRobin() is plain round robin with fewer than two usable weights", () => {
  const policy = weightedRoundRobin();
  // Only server 0 has a usable report: no CPU use, no qps and no report are not usable.
  const s = snapshotOf([
    { id: 0, load: 50, qps: 100 },
    { id: 1, load: 0, qps: 100 },
    { id: 2, load: 50, qps: 0 },
    { id: 3 },
  ]);
  const state = prepareAt(policy, s, 10_000, prepareAt(policy, s, 0), s);
  const first = pickMany(policy, s, state, 4);
  assert.deepEqual([...first].sort(), [0, 1, 2, 3].map(addr));
  for (let round = 0; round < 20; round++) assert.deepEqual(pickMany(policy, s, state, 4), first);
  assertWeights(policy.weights!(s, state, 10_000), [1, 1, 1, 1]);
});

Deno.test("weightedRoundRobin() gives a slow-starting server its ramp fraction of a full share", () => {
  const policy = weightedRoundRobin({ slowStartMs: 10_000, slowStartMinFactor: 0.01 });
  // Server 9 was added 1 s ago, a tenth of the window: a tenth of the others' share.
  const s = snapshotOf(
    Array.from({ length: 10 }, (_, id) => ({ id, addedAtMs: id === 9 ? 9_000 : -1_000_000 })),
  );
  const state = prepareAt(policy, s, 10_000);
  assertAbout(picksById(policy, s, state, 910), [...new Array(9).fill(100), 10]);
  // Once the window is over, the share is full.
  const later = prepareAt(policy, s, 19_000, state, s);
  assertAbout(picksById(policy, s, later, 1_000), new Array(10).fill(100));
});

Deno.test("weightedRoundRobin() weights() are the effective weights with a mean of 1", () => {
  const policy = weightedRoundRobin();
  const s = snapshotOf([
    { id: 0, load: 50, qps: 100 },
    { id: 1, load: 25, qps: 100 },
    { id: 2, load: 10, qps: 100 },
    { id: 3, addedAtMs: 5_000 },
  ]);
  const state = prepareAt(policy, s, 10_000, prepareAt(policy, s, 0), s);
  const weights = policy.weights!(s, state, 10_000);
  // 200, 400, 1000, then the mean 533.3 at half its share (slow start, 5 s of 10 s).
  const raw = [200, 400, 1_000, 1_600 / 3 / 2];
  const mean = raw.reduce((a, b) => a + b) / raw.length;
  assertWeights(weights, raw.map((w) => w / mean));
  assert.ok(Math.abs(weights.reduce((a, b) => a + b) / weights.length - 1) < 1e-12);
  assertWeights([...state.weights], weights);
  assert.deepEqual(policy.weights!(snapshotOf([]), policy.prepare(snapshotOf([])), 0), []);
});

Deno.test("weightedRoundRobin() keeps its rotation when a refresh leaves the weights unchanged", () => {
  const policy = weightedRoundRobin();
  const s = snapshotOf([{ id: 0 }, { id: 1 }, { id: 2 }]);
  const state = prepareAt(policy, s, 0);
  const firstTwo = pickMany(policy, s, state, 2);
  const refreshed = prepareAt(policy, s, 1_000, state, s);
  assert.equal(refreshed.scheduler, state.scheduler);
  const third = pickMany(policy, s, refreshed, 1);
  assert.deepEqual([...firstTwo, ...third].sort(), [0, 1, 2].map(addr));
});

Deno.test("weightedRoundRobin() starts at a random server given an rng, in id order without", () => {
  const policy = weightedRoundRobin();
  const s = snapshotOf([{ id: 0 }, { id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }]);
  assert.deepEqual(pickMany(policy, s, policy.prepare(s), 5), [0, 1, 2, 3, 4].map(addr));
  const firsts = new Set<string | undefined>();
  for (let seed = 0; seed < 50; seed++) {
    firsts.add(pickMany(policy, s, policy.prepare(s, { rng: seededRandom(seed) }), 1)[0]);
  }
  assert.equal(firsts.size, 5);
});

Deno.test("weightedRoundRobin() prepares without throwing on absurd reports", () => {
  const policy = weightedRoundRobin();
  const s = snapshotOf([
    { id: 0, load: 100, qps: 5e-324 },
    { id: 1, load: 1e-300, qps: 1e300 },
    { id: 2, load: 50, qps: 100, eps: -1_000 },
    { id: 3, load: NaN, qps: Infinity },
    { id: 4, load: 50, qps: 100 },
  ]);
  const state = prepareAt(policy, s, 10_000, prepareAt(policy, s, 0), s);
  assert.ok(pickMany(policy, s, state, 1_000).every((a) => a !== undefined));
  assert.ok(policy.weights!(s, state, 10_000).every((w) => w > 0 && Number.isFinite(w)));
});

Deno.test("weightedRoundRobin() answers none on an empty snapshot and reads only its picks", () => {
  const policy = weightedRoundRobin();
  const empty = snapshotOf([]);
  assert.equal(policy.pick(empty, prepareAt(policy, empty, 0), pickContext()).kind, "none");
  const s = snapshotOf([{ id: 0, load: 50, qps: 100 }, { id: 1, load: 25, qps: 100 }]);
  const state = prepareAt(policy, s, 10_000, prepareAt(policy, s, 0), s);
  for (let i = 0; i < 10; i++) {
    const result = policy.pick(s, state, pickContext());
    assert.ok(result.kind === "pick" && s.picks[result.index] === result);
  }
});

Deno.test("weightedRoundRobin() is named weighted_round_robin and refreshes every update period", () => {
  assert.equal(weightedRoundRobin().name, "weighted_round_robin");
  assert.equal(weightedRoundRobin().refreshMs, 1_000);
  assert.equal(weightedRoundRobin({ weightUpdatePeriodMs: 250 }).refreshMs, 250);
});

Deno.test("weightedRoundRobin() refuses bad options with a RangeError naming the option", () => {
  assert.throws(
    () => weightedRoundRobin({ blackoutPeriodMs: -1 }),
    new RangeError(
      "Cannot create weighted_round_robin as 'blackoutPeriodMs' must be >= 0: current value is -1",
    ),
  );
  assert.throws(
    () => weightedRoundRobin({ weightUpdatePeriodMs: 50 }),
    new RangeError(
      "Cannot create weighted_round_robin as 'weightUpdatePeriodMs' must be >= 100: current value is 50",
    ),
  );
  const bad: WeightedRoundRobinOptions[] = [
    { weightExpirationMs: -5 },
    { weightExpirationMs: Infinity },
    { errorUtilizationPenalty: -0.5 },
    { errorUtilizationPenalty: NaN },
    { blackoutPeriodMs: "10" as unknown as number },
    { slowStartMs: -1 },
    { slowStartMinFactor: 0 },
  ];
  for (const options of bad) {
    assert.throws(
      () => weightedRoundRobin(options),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message.startsWith("Cannot create weighted_round_robin as "),
      JSON.stringify(options),
    );
  }
});

function pickContext() {
  return { clientId: "c", nowMs: 0, rng: seededRandom(1) };
}

Deno.test("weightedRoundRobin() trusts servers known for longer than the blackout at once (SetPolicy)", () => {
  const policy = weightedRoundRobin();
  const s = snapshotOf([
    { id: 0, load: 50, qps: 100, addedAtMs: -60_000 },
    { id: 1, load: 50, qps: 200, addedAtMs: -60_000 },
  ]);
  assertAbout(picksById(policy, s, prepareAt(policy, s, 0), 300), [100, 200]);
});

Deno.test("weightedRoundRobin() keeps a weight through reports without traffic until it expires", () => {
  const policy = weightedRoundRobin({ weightExpirationMs: 60_000 });
  const busy = snapshotOf([
    { id: 0, load: 50, qps: 100, addedAtMs: -60_000 },
    { id: 1, load: 50, qps: 200, addedAtMs: -60_000 },
  ]);
  const first = prepareAt(policy, busy, 0);
  // Server 1 goes idle: its reports now say qps 0. Its weight stays what traffic showed.
  const idle = snapshotOf([
    { id: 0, load: 50, qps: 100, addedAtMs: -60_000, reportedAtMs: 5_000 },
    { id: 1, load: 1, qps: 0, addedAtMs: -60_000, reportedAtMs: 5_000, seq: 1 },
  ], 2);
  const later = prepareAt(policy, idle, 5_000, first, busy);
  assertAbout(picksById(policy, idle, later, 300), [100, 200]);
  // Past the expiration the old weight is gone: plain round robin (fewer than two weights).
  const expired = prepareAt(policy, idle, 70_000, later, idle);
  assertAbout(picksById(policy, idle, expired, 300), [150, 150]);
});
