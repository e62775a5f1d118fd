/**
 * The open loop of `runLoad` (`--rate`): arrivals are scheduled whether or not earlier tasks have
 * returned, at most `concurrency` run at once, and a task's latency includes its wait for a slot.
 * The task client is a stand-in whose tasks take a fixed time, so the test needs no servers.
 */
import assert from "node:assert/strict";
import { runLoad } from "../lib/client/load_run.ts";
import type { TaskClient, TaskOutcome } from "../lib/client/task_client.ts";
import { seededRandom } from "./_policy_helpers.ts";

/** A task client whose every task takes `ms` and succeeds; it counts what ran at once. */
function slowClient(ms: number) {
  const seen = { started: 0, inFlight: 0, maxInFlight: 0 };
  const client = {
    run(): Promise<TaskOutcome> {
      seen.started++;
      seen.inFlight++;
      seen.maxInFlight = Math.max(seen.maxInFlight, seen.inFlight);
      return new Promise((resolve) =>
        setTimeout(() => {
          seen.inFlight--;
          resolve({ ok: true, server: "s:1", result: "", attempts: 1 });
        }, ms)
      );
    },
  } as unknown as TaskClient;
  return { client, seen };
}

Deno.test("open loop: every scheduled task is sent, never more than the cap at once", async () => {
  const { client, seen } = slowClient(20);
  const summary = await runLoad({
    client,
    taskType: "SIMPLE",
    requests: 60,
    concurrency: 3,
    ratePerS: 5_000,
    rng: seededRandom(1),
  });
  assert.equal(seen.started, 60);
  assert.equal(summary.succeeded, 60);
  assert.equal(seen.maxInFlight, 3);
  assert.equal(seen.inFlight, 0, "the run ends after its last task");
});

Deno.test("open loop: a task's wait for a slot counts in its latency", async () => {
  // Ten tasks arrive at once (a very high rate) and one runs at a time, each taking 20 ms: the
  // last has waited for nine others, so its latency is at least 9 x 20 ms from its arrival.
  const open = await runLoad({
    client: slowClient(20).client,
    taskType: "SIMPLE",
    requests: 10,
    concurrency: 1,
    ratePerS: 1_000_000,
    rng: seededRandom(2),
  });
  assert.ok(open.latencyMs.max >= 180, `max ${open.latencyMs.max} ms`);
});

Deno.test("open loop: a duration run sends the tasks scheduled before its end, then waits for them", async () => {
  const { client, seen } = slowClient(5);
  const summary = await runLoad({
    client,
    taskType: "SIMPLE",
    durationMs: 500,
    concurrency: 100,
    ratePerS: 400,
    rng: seededRandom(3),
  });
  // The arrivals are the seeded exponential gaps from the start, up to 500 ms, however late the
  // timers fire.
  const rng = seededRandom(3);
  let expected = 0;
  for (let at = 0; at < 500; at += -Math.log(1 - rng()) * 1_000 / 400) expected++;
  assert.equal(seen.started, expected);
  assert.equal(summary.succeeded, expected);
  assert.equal(seen.inFlight, 0);
});
