/** `RifLatency`: what a server answers probes with. */
import assert from "node:assert/strict";
import { RifLatency } from "../lib/backend/rif_latency.ts";

Deno.test("RifLatency counts requests in flight and files each latency under the RIF it found", () => {
  const est = new RifLatency();
  const a = est.start();
  const b = est.start();
  assert.deepEqual([a, b, est.rif], [0, 1, 2]);
  est.end(a, 10);
  est.end(b, 30);
  assert.equal(est.rif, 0);
  assert.equal(est.estimateMs(0), 10);
  assert.equal(est.estimateMs(1), 30);
});

Deno.test("RifLatency estimates the median of the latest samples at a RIF", () => {
  const est = new RifLatency({ samplesPerRif: 4 });
  for (const ms of [100, 1, 2, 3, 4]) est.end(est.start(), ms);
  // 100 was pushed out by the four after it.
  assert.equal(est.estimateMs(0), 2.5);
  est.end(est.start(), 50);
  assert.equal(est.estimateMs(0), 3.5);
});

Deno.test("RifLatency uses the nearest RIF with samples, NaN before any", () => {
  const est = new RifLatency({ buckets: 8 });
  assert.ok(Number.isNaN(est.estimateMs()));
  est.end(2, 20);
  est.end(6, 60);
  assert.equal(est.estimateMs(0), 20);
  assert.equal(est.estimateMs(4), 60, "a tie goes to the higher RIF");
  assert.equal(est.estimateMs(100), 60, "RIFs past the last bucket share it");
});

Deno.test("RifLatency refuses sizes that are not positive integers", () => {
  assert.throws(() => new RifLatency({ buckets: 0 }), /'buckets' and 'samplesPerRif'/);
  assert.throws(() => new RifLatency({ samplesPerRif: 1.5 }), /'buckets' and 'samplesPerRif'/);
});
