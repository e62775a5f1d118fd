/** WorkerPool runs CPU work off the main thread, queues beyond its size, and closes cleanly. */
import assert from "node:assert/strict";
import { cpuWork } from "../lib/backend/cpu_work.ts";
import { PoolClosedError, WorkerPool } from "../lib/backend/worker_pool.ts";

Deno.test("WorkerPool runs cpuWork in workers and returns its checksum", async () => {
  const pool = new WorkerPool(2);
  try {
    const results = await Promise.all([1_000, 2_000, 3_000].map((n) => pool.run(n)));
    assert.deepEqual(results, [cpuWork(1_000), cpuWork(2_000), cpuWork(3_000)]);
    assert.equal(pool.inFlight, 0);
  } finally {
    pool.close();
  }
});

Deno.test("WorkerPool queues tasks beyond its size and counts them", async () => {
  const pool = new WorkerPool(1);
  try {
    const jobs = [pool.run(5_000_000), pool.run(10), pool.run(10)];
    assert.equal(pool.inFlight, 3);
    assert.equal(pool.queueLength, 2);
    await Promise.all(jobs);
    assert.equal(pool.queueLength, 0);
  } finally {
    pool.close();
  }
});

Deno.test("WorkerPool.close() rejects queued tasks with PoolClosedError", async () => {
  const pool = new WorkerPool(1);
  const running = pool.run(5_000_000);
  const queued = pool.run(10);
  pool.close();
  await assert.rejects(running, PoolClosedError);
  await assert.rejects(queued, PoolClosedError);
  await assert.rejects(pool.run(1), PoolClosedError);
});

Deno.test("WorkerPool refuses a size below one", () => {
  assert.throws(() => new WorkerPool(0), RangeError);
});
