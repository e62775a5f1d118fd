/** `deno task demo` runs every policy end to end, with real processes, and prints its table. */
import assert from "node:assert/strict";
import { spawnEntry } from "../lib/harness/entry_process.ts";
import { POLICY_NAMES } from "../policies/mod.ts";

Deno.test("demo runs each policy against real processes and prints one row per policy", async () => {
  const demo = spawnEntry("demo", ["--duration", "1", "--concurrency", "3"], {
    captureStdout: true,
  });
  const status = await demo.status;
  assert.equal(status.code, 0, demo.log());
  const out = demo.stdout();
  assert.match(out, /^Dashboard \(live while the demo runs\): http:\/\/127\.0\.0\.1:\d+\/$/m);
  const rows = out.split("\n").filter((line) => POLICY_NAMES.some((p) => line.startsWith(p)));
  assert.deepEqual(rows.map((r) => r.split(/\s+/)[0]), POLICY_NAMES);
  for (const row of rows) {
    const [, reqPerS, , , failed] = row.split(/\s+/);
    assert.ok(Number(reqPerS) > 0, row);
    assert.equal(failed, "0", row);
  }
  // pick_first sends everything to one server.
  const pickFirst = rows.find((r) => r.startsWith("pick_first"))!;
  assert.equal(pickFirst.match(/100\.0%/g)?.length, 1, pickFirst);
});
