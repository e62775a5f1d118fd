/**
 * The health checker's interval at scale ({@linkcode checkIntervalMs}): small sets keep the
 * configured interval, large ones stretch it so the total check rate stays under the cap.
 */
import assert from "node:assert/strict";
import {
  checkIntervalMs,
  DEFAULT_HEALTH_INTERVAL_MS,
  DEFAULT_HEALTH_TIMEOUT_MS,
  DEFAULT_MAX_CHECKS_PER_S,
} from "../lib/health/health_checker.ts";

Deno.test("checkIntervalMs keeps the interval for small sets and caps the total rate for large ones", () => {
  assert.equal(checkIntervalMs(1, 250, 2_500), 250);
  assert.equal(checkIntervalMs(625, 250, 2_500), 250);
  assert.equal(checkIntervalMs(1_000, 250, 2_500), 400);
  assert.equal(checkIntervalMs(10_000, 250, 2_500), 4_000);
  assert.equal(checkIntervalMs(0, 100, 2_500), 100);
  for (const servers of [1, 10, 100, 1_000, 10_000]) {
    const perS = (servers * 1_000) / checkIntervalMs(servers, 250, 2_500);
    assert.ok(perS <= 2_500, `${servers} servers: ${perS} checks/s`);
  }
});

Deno.test("by default a hung server is ejected within 1 s up to 250 servers, and within 1.5 s among 1,000", () => {
  const worstMs = (servers: number) =>
    checkIntervalMs(servers, DEFAULT_HEALTH_INTERVAL_MS, DEFAULT_MAX_CHECKS_PER_S) +
    DEFAULT_HEALTH_TIMEOUT_MS;
  assert.ok(worstMs(250) < 1_000);
  assert.ok(worstMs(1_000) <= 1_500);
});
