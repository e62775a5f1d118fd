/**
 * SlotPool runs emulated tasks on a fixed number of slots with a FIFO queue, stretches drawn
 * times by the capacity schedule, and measures busy slots; all on a fake clock, so nothing waits.
 */
import assert from "node:assert/strict";
import {
  capacityAt,
  constantCapacity,
  parseCapacitySchedule,
} from "../lib/backend/capacity_schedule.ts";
import { parseServiceTime } from "../lib/backend/service_time.ts";
import {
  type SlotClock,
  SlotMeter,
  SlotPool,
  TaskCancelledError,
} from "../lib/backend/slot_pool.ts";
import { PoolClosedError } from "../lib/backend/worker_pool.ts";

/** A clock that moves only when told, firing due timers in order; it records every delay asked. */
class FakeClock implements SlotClock {
  nowMs = 0;
  readonly asked: number[] = [];
  #timers = new Map<number, { atMs: number; fn: () => void }>();
  #nextId = 1;

  now(): number {
    return this.nowMs;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    this.asked.push(ms);
    const id = this.#nextId++;
    this.#timers.set(id, { atMs: this.nowMs + ms, fn });
    return id;
  }

  clearTimeout(id: unknown): void {
    this.#timers.delete(id as number);
  }

  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time on by `ms`, firing each timer due on the way at its own time. */
  async advance(ms: number): Promise<void> {
    const until = this.nowMs + ms;
    for (;;) {
      const due = [...this.#timers].filter(([, t]) => t.atMs <= until)
        .sort(([, a], [, b]) => a.atMs - b.atMs)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.nowMs = due[1].atMs;
      due[1].fn();
      await Promise.resolve(); // let resolved tasks' continuations run
    }
    this.nowMs = until;
  }
}

const FIXED_10MS = parseServiceTime("fixed:10ms");

Deno.test("SlotPool runs at most `slots` tasks at once and queues the rest in order", async () => {
  const clock = new FakeClock();
  const pool = new SlotPool({ slots: 2, serviceTime: FIXED_10MS, clock });
  const finished: number[] = [];
  const tasks = [0, 1, 2, 3, 4].map((i) => pool.run().then(() => finished.push(i)));
  assert.equal(clock.pending, 2, "two tasks hold a slot");
  assert.equal(pool.inFlight, 5);
  assert.equal(pool.queueLength, 3);
  let maxRunning = clock.pending;
  while (finished.length < 5) {
    await clock.advance(5);
    maxRunning = Math.max(maxRunning, clock.pending);
    assert.equal(pool.inFlight, 5 - finished.length);
  }
  await Promise.all(tasks);
  assert.equal(maxRunning, 2);
  assert.deepEqual(finished, [0, 1, 2, 3, 4], "first come, first served");
  assert.equal(pool.inFlight, 0);
  assert.equal(pool.queueLength, 0);
  assert.equal(clock.nowMs, 30, "five 10 ms tasks on two slots end at 30 ms");
});

Deno.test("SlotPool drops a waiting task whose caller gave up, and runs a started one to the end", async () => {
  const clock = new FakeClock();
  const pool = new SlotPool({ slots: 1, serviceTime: FIXED_10MS, clock });
  const callers = [0, 1, 2].map(() => new AbortController());
  const outcomes = callers.map((c) =>
    pool.run(c.signal).then(() => "done", (e: Error) => e.constructor.name)
  );
  callers[0].abort(); // holds the slot already: runs on
  callers[1].abort(); // waits: leaves the queue at once
  assert.equal(pool.inFlight, 2);
  assert.equal(pool.queueLength, 1);
  await clock.advance(100);
  assert.deepEqual(await Promise.all(outcomes), ["done", "TaskCancelledError", "done"]);
  assert.equal(clock.nowMs, 100);
  assert.deepEqual(clock.asked, [10, 10], "the dropped task never held a slot");
  const aborted = new AbortController();
  aborted.abort();
  await assert.rejects(pool.run(aborted.signal), TaskCancelledError);
  assert.equal(pool.inFlight, 0);
});

Deno.test("SlotPool divides the drawn time by the capacity", async () => {
  const rng = () => 0.5;
  const exp = parseServiceTime("exp:20ms");
  const full = new FakeClock();
  const half = new FakeClock();
  const a = new SlotPool({ slots: 1, serviceTime: exp, rng, clock: full });
  const b = new SlotPool({
    slots: 1,
    serviceTime: exp,
    rng,
    clock: half,
    capacity: constantCapacity(0.5),
  });
  const [heldA, heldB] = [a.run(), b.run()];
  assert.equal(half.asked[0], 2 * full.asked[0]);
  await Promise.all([full.advance(1_000), half.advance(1_000)]);
  assert.equal(await heldA, full.asked[0], "a task resolves with the time it held its slot");
  assert.equal(await heldB, half.asked[0]);
});

Deno.test("SlotPool takes the capacity of the schedule at the time a task gets its slot", async () => {
  const clock = new FakeClock();
  const pool = new SlotPool({
    slots: 1,
    serviceTime: FIXED_10MS,
    clock,
    capacity: parseCapacitySchedule("0s:1,100ms:0.25,200ms:1"),
  });
  await Promise.all([pool.run(), clock.advance(10)]);
  await clock.advance(100); // now 110 ms
  const slow = pool.run();
  const queued = pool.run(); // gets its slot at 150 ms, still in the slow part
  await clock.advance(100);
  await Promise.all([slow, queued]);
  await clock.advance(10); // now 220 ms
  await Promise.all([pool.run(), clock.advance(10)]);
  assert.deepEqual(clock.asked, [10, 40, 40, 10]);
});

Deno.test("SlotMeter reports busy slot-time over slots times the interval, in percent", async () => {
  const clock = new FakeClock();
  const pool = new SlotPool({ slots: 2, serviceTime: FIXED_10MS, clock });
  const meter = new SlotMeter(pool, clock);
  const task = pool.run(); // one slot of two busy for 10 ms of 20
  await clock.advance(20);
  await task;
  assert.equal(meter.sample(), 25);
  const tasks = [pool.run(), pool.run(), pool.run(), pool.run()]; // both slots busy for 20 ms
  await clock.advance(10);
  assert.equal(meter.sample(), 100, "a running task counts before it ends");
  await clock.advance(10);
  await Promise.all(tasks);
  assert.equal(meter.sample(), 100);
  await clock.advance(10);
  assert.equal(meter.sample(), 0);
});

Deno.test("SlotPool.close() rejects running and queued tasks with PoolClosedError", async () => {
  const clock = new FakeClock();
  const pool = new SlotPool({ slots: 1, serviceTime: FIXED_10MS, clock });
  const running = pool.run();
  const queued = pool.run();
  pool.close();
  await assert.rejects(running, PoolClosedError);
  await assert.rejects(queued, PoolClosedError);
  await assert.rejects(pool.run(), PoolClosedError);
  assert.equal(clock.pending, 0, "no timer left behind");
});

Deno.test("SlotPool runs with the real clock and timers", async () => {
  const pool = new SlotPool({ slots: 2, serviceTime: parseServiceTime("fixed:1ms") });
  const held = await Promise.all([pool.run(), pool.run(), pool.run()]);
  assert.deepEqual(held, [1, 1, 1]);
  assert.equal(pool.inFlight, 0);
});

Deno.test("SlotPool refuses fewer than one slot", () => {
  assert.throws(() => new SlotPool({ slots: 0, serviceTime: FIXED_10MS }), RangeError);
});

Deno.test("parseCapacitySchedule() reads T:F steps and capacityAt() follows them", () => {
  const schedule = parseCapacitySchedule("0s:1,20s:0.3,40000ms:1");
  assert.deepEqual(schedule, [
    { atMs: 0, capacity: 1 },
    { atMs: 20_000, capacity: 0.3 },
    { atMs: 40_000, capacity: 1 },
  ]);
  assert.equal(capacityAt(schedule, 0), 1);
  assert.equal(capacityAt(schedule, 19_999), 1);
  assert.equal(capacityAt(schedule, 20_000), 0.3);
  assert.equal(capacityAt(schedule, 60_000), 1);
});

Deno.test("parseCapacitySchedule() refuses bad schedules saying what is accepted", () => {
  for (
    const [text, why] of [
      ["0s:1,40s:0.3,20s:1", /times must be ascending/],
      ["0s:1,20s:0.3,20s:1", /times must be ascending/],
      ["5s:1", /the first time must be 0s/],
      ["0s:0", /capacity 0 is not above 0 and at most 1/],
      ["0s:1.5", /capacity 1.5 is not above 0/],
      ["0s:1,20:0.5", /'20:0.5' is not T:F/],
      ["", /'' is not T:F/],
    ] as const
  ) {
    assert.throws(() => parseCapacitySchedule(text), (error: Error) => {
      assert.ok(error instanceof RangeError);
      assert.match(error.message, why);
      assert.match(error.message, /use T:F,T:F,\.\.\./);
      return true;
    }, text);
  }
  assert.throws(() => constantCapacity(0), RangeError);
});
