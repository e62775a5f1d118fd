/**
 * Emulated backends (`--service-time`, `--capacity`): real processes whose CPU_HEAVY tasks hold a
 * slot for a drawn time instead of computing. A load-aware balancer sends the slower one fewer
 * tasks, and the load each reports is its busy slots.
 */
import assert from "node:assert/strict";
import { unary } from "../lib/wire/proto.ts";
import { describe } from "./_load.ts";
import { startSystem } from "./_harness.ts";
import { listServers, waitFor, waitForServers } from "./_system.ts";

/** Two slots each, 20 ms a task at full speed; the slow one runs at a quarter of it. */
const EMULATED = ["--service-time", "fixed:20ms", "--workers", "2"];

Deno.test("emulated backends: least_load sends the --capacity 0.25 one fewer tasks, all succeed, and it reports more busy slots at an equal rate", async () => {
  await using sys = await startSystem();
  const balancer = await sys.balancer(["--policy", "least_load"]);
  const lb = sys.lbClient(balancer.address);
  const fast = sys.backend(["--balancer", balancer.address, ...EMULATED]);
  const slow = sys.backend(["--balancer", balancer.address, ...EMULATED, "--capacity", "0.25"]);
  await waitForServers(lb, [fast.address, slow.address], 15_000, true);

  // Through the balancer: CPU_HEAVY x4 closed loop, for about 3 s.
  const client = sys.timedClient({ clientId: "emulated", balancer: balancer.address });
  const load = sys.load({ client, taskType: "CPU_HEAVY", concurrency: 4 });
  await new Promise((r) => setTimeout(r, 3_000));
  const totals = await load.stop();
  const [toFast, toSlow] = [
    totals.perServer[fast.address] ?? 0,
    totals.perServer[slow.address] ?? 0,
  ];
  console.log(
    `[emulated] least_load, CPU_HEAVY x4: ${describe(totals)}; fast ${toFast}, slow ${toSlow}`,
  );
  assert.equal(totals.failed, 0, JSON.stringify(totals.failuresByCode));
  assert.ok(totals.requests > 0);
  assert.ok(toSlow < toFast, `slow got ${toSlow} tasks, fast ${toFast}`);

  // Straight to each backend at the same rate (one task every 50 ms): the slow one's tasks hold
  // their slot four times as long, so its reported load must rise above the fast one's.
  const clients = [fast, slow].map((b) => sys.backendClient(b.address));
  const sent: Promise<unknown>[] = [];
  let n = 0;
  const ticker = setInterval(() => {
    for (const be of clients) {
      sent.push(unary(be.ProcessTask, be, { task_id: `direct-${n++}`, task_type: "CPU_HEAVY" }));
    }
  }, 50);
  try {
    await waitFor("the slow backend to report more busy slots than the fast one", async () => {
      const servers = (await listServers(lb)).servers;
      const load = (address: string) => servers.find((s) => s.server_address === address)!.cpu_load;
      return load(slow.address) > load(fast.address) && load(fast.address) > 0;
    }, 10_000);
  } finally {
    clearInterval(ticker);
  }
  const results = await Promise.all(sent);
  assert.ok(results.every((r) => /held a slot for/.test((r as { result: string }).result)));
});

Deno.test("emulated backend drops a queued task whose caller's deadline passed, and finishes the one it started", async () => {
  await using sys = await startSystem();
  const balancer = await sys.balancer();
  const backend = sys.backend([
    "--balancer",
    balancer.address,
    "--service-time",
    "fixed:1s",
    "--workers",
    "1",
  ]);
  const be = sys.backendClient(backend.address);
  await waitFor("the backend to serve", async () => {
    await unary(be.GetStats, be, {});
    return true;
  }, 15_000);
  // Three tasks with a 300 ms deadline on one slot: the first holds it for 1 s, two wait.
  const calls = [0, 1, 2].map((i) =>
    unary(be.ProcessTask, be, { task_id: `late-${i}`, task_type: "CPU_HEAVY" }, {
      deadline: Date.now() + 300,
    }).then(() => "ok", (e: { code: number }) => e.code)
  );
  assert.deepEqual(await Promise.all(calls), [4, 4, 4], "every caller gives up: DEADLINE_EXCEEDED");
  let stats = await unary(be.GetStats, be, {});
  await waitFor("the started task to end", async () => {
    stats = await unary(be.GetStats, be, {});
    return Number(stats.in_flight) === 0;
  }, 10_000);
  // The queue emptied when the callers gave up: only the started task ran.
  assert.equal(Number(stats.heavy_completed), 1);
});
