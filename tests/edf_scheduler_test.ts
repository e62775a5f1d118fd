/** The EDF scheduler on its own: shares, rounds, ties, random start, bad weights. */
import assert from "node:assert/strict";
import { createEdfScheduler, type EdfScheduler, nextIndex } from "../policies/edf_scheduler.ts";
import { seededRandom } from "./_policy_helpers.ts";

function draw(scheduler: EdfScheduler, count: number): number[] {
  return Array.from({ length: count }, () => nextIndex(scheduler));
}

function counts(indices: number[], n: number): number[] {
  const out = new Array<number>(n).fill(0);
  for (const i of indices) out[i]++;
  return out;
}

Deno.test("nextIndex() names each entry in proportion to its weight (1, 2, 7 within 1%)", () => {
  const scheduler = createEdfScheduler([1, 2, 7], seededRandom(3));
  const [a, b, c] = counts(draw(scheduler, 10_000), 3);
  assert.ok(Math.abs(a - 1_000) <= 10, `weight 1 got ${a}`);
  assert.ok(Math.abs(b - 2_000) <= 20, `weight 2 got ${b}`);
  assert.ok(Math.abs(c - 7_000) <= 70, `weight 7 got ${c}`);
});

Deno.test("nextIndex() keeps every share within two picks of its weight at any prefix", () => {
  const weights = [0.5, 3, 1.25, 10, 0.01];
  const total = weights.reduce((a, b) => a + b);
  const scheduler = createEdfScheduler(weights, seededRandom(11));
  const seen = new Array<number>(weights.length).fill(0);
  for (let pick = 1; pick <= 20_000; pick++) {
    seen[nextIndex(scheduler)]++;
    if (pick % 997 === 0) {
      weights.forEach((w, i) => assert.ok(Math.abs(seen[i] - (pick * w) / total) <= 2));
    }
  }
});

Deno.test("nextIndex() names the earliest deadline, as a linear scan would", () => {
  const rng = seededRandom(5);
  const weights = Array.from({ length: 33 }, () => 1 + Math.floor(rng() * 4));
  const scheduler = createEdfScheduler(weights, seededRandom(9));
  const deadlines = Float64Array.from(scheduler.deadlines);
  for (let pick = 0; pick < 2_000; pick++) {
    let earliest = 0;
    for (let i = 1; i < weights.length; i++) {
      if (deadlines[i] < deadlines[earliest]) earliest = i;
    }
    assert.equal(nextIndex(scheduler), earliest);
    deadlines[earliest] += 1 / weights[earliest];
  }
});

Deno.test("nextIndex() with equal weights names every entry exactly once per round", () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const n = 7;
    const scheduler = createEdfScheduler(new Array(n).fill(2.5), seededRandom(seed));
    const first = draw(scheduler, n);
    assert.deepEqual([...first].sort(), [0, 1, 2, 3, 4, 5, 6]);
    for (let round = 0; round < 50; round++) assert.deepEqual(draw(scheduler, n), first);
  }
});

Deno.test("nextIndex() breaks ties by index, so no offset gives index order", () => {
  const scheduler = createEdfScheduler([1, 1, 1, 1], () => 0);
  assert.deepEqual(draw(scheduler, 8), [0, 1, 2, 3, 0, 1, 2, 3]);
});

Deno.test("createEdfScheduler() offsets the start randomly, so balancers do not all start alike", () => {
  const firsts = new Set<number>();
  for (let seed = 0; seed < 50; seed++) {
    firsts.add(nextIndex(createEdfScheduler([1, 1, 1, 1, 1], seededRandom(seed))));
  }
  assert.equal(firsts.size, 5);
});

Deno.test("nextIndex() with a single entry always names it", () => {
  const scheduler = createEdfScheduler([42], seededRandom(1));
  assert.deepEqual(new Set(draw(scheduler, 100)), new Set([0]));
});

Deno.test("nextIndex() with no entry answers -1", () => {
  assert.equal(nextIndex(createEdfScheduler([], seededRandom(1))), -1);
});

Deno.test("nextIndex() is deterministic given the same weights and rng seed", () => {
  const weights = [3, 1, 4, 1, 5, 9, 2, 6];
  assert.deepEqual(
    draw(createEdfScheduler(weights, seededRandom(7)), 500),
    draw(createEdfScheduler(weights, seededRandom(7)), 500),
  );
});

Deno.test("createEdfScheduler() refuses weights that are zero, negative or not finite", () => {
  for (const bad of [0, -1, NaN, Infinity, -Infinity, 5e-324]) {
    assert.throws(
      () => createEdfScheduler([1, bad, 2], seededRandom(1)),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message ===
          `Cannot create EDF scheduler as 'weights[1]' must be positive and finite: current value is ${bad}`,
    );
  }
});
