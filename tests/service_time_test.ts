/** Service-time distributions (`lib/backend/service_time.ts`): parsing, and draws against their mean. */
import assert from "node:assert/strict";
import {
  meanServiceTime,
  parseServiceTime,
  sampleServiceTime,
} from "../lib/backend/service_time.ts";
import { seededRandom } from "./_policy_helpers.ts";

Deno.test("service times parse in every form and unit", () => {
  assert.deepEqual(parseServiceTime("fixed:20ms"), { kind: "fixed", ms: 20 });
  assert.deepEqual(parseServiceTime("exp:1.5s"), { kind: "exp", meanMs: 1_500 });
  assert.deepEqual(parseServiceTime("exp:500us"), { kind: "exp", meanMs: 0.5 });
  assert.deepEqual(parseServiceTime("lognormal:20ms:0.5"), {
    kind: "lognormal",
    meanMs: 20,
    sigma: 0.5,
  });
  assert.deepEqual(parseServiceTime("bimodal:10ms:100ms:0.1"), {
    kind: "bimodal",
    fastMs: 10,
    slowMs: 100,
    slowProbability: 0.1,
  });
});

Deno.test("a bad service time is refused with what is accepted", () => {
  for (
    const bad of [
      "",
      "uniform:20ms",
      "exp",
      "exp:20",
      "exp:0ms",
      "exp:-1ms",
      "fixed:20ms:3",
      "lognormal:20ms",
      "lognormal:20ms:0",
      "bimodal:10ms:100ms:1.5",
      "exp:2h",
      "fixed:3601s",
    ]
  ) {
    assert.throws(() => parseServiceTime(bad), /is not a service time .*use fixed:T/, bad);
  }
});

Deno.test("draws average to the distribution's mean, and a seed repeats them", () => {
  for (
    const text of ["fixed:20ms", "exp:20ms", "lognormal:20ms:0.8", "bimodal:10ms:100ms:0.1"]
  ) {
    const d = parseServiceTime(text);
    const rng = seededRandom(7);
    const n = 200_000;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += sampleServiceTime(d, rng);
    const mean = meanServiceTime(d);
    assert.ok(Math.abs(sum / n - mean) / mean < 0.02, `${text}: ${sum / n} against ${mean}`);
    const again = seededRandom(7);
    const first = seededRandom(7);
    assert.equal(sampleServiceTime(d, first), sampleServiceTime(d, again));
  }
});

Deno.test("exponential draws have the exponential's tail", () => {
  const d = parseServiceTime("exp:10ms");
  const rng = seededRandom(3);
  const n = 200_000;
  let over = 0;
  for (let i = 0; i < n; i++) if (sampleServiceTime(d, rng) > 10 * Math.log(100)) over++;
  // P(X > mean * ln 100) = 1 %.
  assert.ok(Math.abs(over / n - 0.01) < 0.001, String(over / n));
});
