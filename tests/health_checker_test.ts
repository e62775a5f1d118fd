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
} from "../lib/health_checker.ts";

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

Deno.test("by default a dead or hung server among 1,000 is still ejected within 1 s", () => {
  const intervalMs = checkIntervalMs(
    1_000,
    DEFAULT_HEALTH_INTERVAL_MS,
    DEFAULT_MAX_CHECKS_PER_S,
  );
  assert.ok(intervalMs + DEFAULT_HEALTH_TIMEOUT_MS < 1_000);
});
