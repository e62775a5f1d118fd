/**
 * The sweeper that times health checks in flight (`lib/health/probe_sweeper.ts`), on a fake
 * clock and a fake interval timer: no real time passes and nothing sleeps.
 */
import assert from "node:assert/strict";
import {
  LATE_TIMER_MS,
  ProbeSweeper,
  SWEEP_MS,
  type SweepTimers,
  type SweptCheck,
} from "../lib/health/probe_sweeper.ts";

/** A clock and interval timers that move only when told to. */
class FakeTime implements SweepTimers {
  now = 0;
  #timers = new Map<number, { callback: () => void; ms: number; dueAt: number }>();
  #nextId = 1;

  setInterval(callback: () => void, ms: number): number {
    const id = this.#nextId++;
    this.#timers.set(id, { callback, ms, dueAt: this.now + ms });
    return id;
  }

  clearInterval(id: unknown): void {
    this.#timers.delete(id as number);
  }

  /** Interval timers running. */
  get running(): number {
    return this.#timers.size;
  }

  /** Moves the clock `ms` on, firing each timer as it falls due, in order. */
  advance(ms: number): void {
    const until = this.now + ms;
    while (true) {
      let next: [number, { callback: () => void; ms: number; dueAt: number }] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].dueAt <= until && (next === undefined || entry[1].dueAt < next[1].dueAt)) {
          next = entry;
        }
      }
      if (next === undefined) break;
      const [, timer] = next;
      this.now = Math.max(this.now, timer.dueAt);
      timer.dueAt = this.now + timer.ms;
      timer.callback();
    }
    this.now = until;
  }

  /**
   * A stall of the process: the clock moves `ms` on with no timer firing, then the timers that
   * fell due fire once, late, as an event loop catching up does.
   */
  stall(ms: number): void {
    this.now += ms;
    for (const timer of [...this.#timers.values()]) {
      if (timer.dueAt > this.now) continue;
      timer.dueAt = this.now + timer.ms;
      timer.callback();
    }
  }
}

/** A check whose expiry is recorded; `then` runs when it expires (after it is untracked). */
function fakeCheck(
  sweeper: ProbeSweeper,
  name: string,
  timeoutMs: number,
  expired: string[],
  then: () => void = () => {},
): SweptCheck {
  const check: SweptCheck = {
    timeoutMs,
    deadline: 0,
    extended: false,
    slot: -1,
    expire() {
      sweeper.untrack(check);
      expired.push(name);
      then();
    },
  };
  return check;
}

function setUp() {
  const time = new FakeTime();
  const sweeper = new ProbeSweeper({ clock: () => time.now, timers: time });
  return { time, sweeper, expired: [] as string[] };
}

Deno.test("ProbeSweeper fails a check at the first sweep past its deadline, not before", () => {
  const { time, sweeper, expired } = setUp();
  assert.equal(time.running, 0, "no timer before a check is in flight");
  const check = fakeCheck(sweeper, "a", 50, expired);
  sweeper.track(check);
  assert.equal(check.deadline, 50);
  assert.equal(time.running, 1);
  time.advance(49);
  assert.deepEqual(expired, []);
  time.advance(1);
  assert.deepEqual(expired, ["a"]);
  assert.equal(sweeper.size, 0);
  assert.equal(check.slot, -1);
});

Deno.test("ProbeSweeper does not fail a check untracked before its deadline", () => {
  const { time, sweeper, expired } = setUp();
  const checks = ["a", "b", "c"].map((name) => fakeCheck(sweeper, name, 30, expired));
  for (const check of checks) sweeper.track(check);
  sweeper.untrack(checks[0]);
  sweeper.untrack(checks[0]); // twice: nothing more
  assert.equal(sweeper.size, 2);
  time.advance(100);
  assert.deepEqual(expired.sort(), ["b", "c"]);
});

Deno.test("ProbeSweeper keeps its timer through a gap with no check, and stops it at the first sweep that finds none", () => {
  const { time, sweeper, expired } = setUp();
  const first = fakeCheck(sweeper, "a", 100, expired);
  sweeper.track(first);
  time.advance(SWEEP_MS / 2);
  sweeper.untrack(first); // answered
  assert.equal(time.running, 1, "not stopped when the last check ends");
  assert.ok(sweeper.running);
  const second = fakeCheck(sweeper, "b", 100, expired);
  sweeper.track(second); // before the next sweep: the same timer goes on
  assert.equal(time.running, 1);
  sweeper.untrack(second);
  time.advance(SWEEP_MS);
  assert.equal(time.running, 0, "stopped by the sweep that found none");
  assert.ok(!sweeper.running);
  sweeper.track(fakeCheck(sweeper, "c", 20, expired));
  assert.equal(time.running, 1, "started again by the next check");
  time.advance(30);
  assert.deepEqual(expired, ["c"]);
});

Deno.test("ProbeSweeper gives a check one more look after a stall of the process, as long as the stall", () => {
  const { time, sweeper, expired } = setUp();
  sweeper.track(fakeCheck(sweeper, "short", 200, expired));
  sweeper.track(fakeCheck(sweeper, "long", 1_000, expired));
  time.advance(SWEEP_MS);
  // The process stalls past "short"'s deadline: the next sweep runs 290 ms late, and waits
  // once more for answers it may not have read, as long as the stall but at most the timeout.
  time.stall(300);
  assert.deepEqual(expired, [], "a sweep after a stall does not fail a check at once");
  time.advance(190);
  assert.deepEqual(expired, []);
  time.advance(20);
  assert.deepEqual(expired, ["short"], "failed 200 ms (its timeout) after the late sweep");
  // "long": a stall past its deadline (140 ms late) gives it 140 ms more, and only once: a
  // second stall past the new deadline fails it at once.
  time.advance(1_000 - time.now - SWEEP_MS);
  time.stall(LATE_TIMER_MS + 50);
  time.advance(SWEEP_MS);
  assert.deepEqual(expired, ["short"]);
  time.stall(LATE_TIMER_MS + 50);
  assert.deepEqual(expired, ["short", "long"], "a deadline moves once only");
});

Deno.test("ProbeSweeper does not extend a deadline for a sweep late by LATE_TIMER_MS or less", () => {
  const { time, sweeper, expired } = setUp();
  sweeper.track(fakeCheck(sweeper, "a", 50, expired));
  time.stall(SWEEP_MS + LATE_TIMER_MS); // the first sweep, LATE_TIMER_MS late
  assert.deepEqual(expired, ["a"]);
});

Deno.test("ProbeSweeper looks at every check once when failing one ends others in the same sweep", () => {
  const { time, sweeper, expired } = setUp();
  // Five checks on one "connection": the first to fail closes it, which ends the others.
  const onConnection: SweptCheck[] = [];
  const closeConnection = () => {
    for (const check of onConnection) sweeper.untrack(check);
  };
  for (const name of ["c1", "c2", "c3", "c4", "c5"]) {
    const check = fakeCheck(sweeper, name, 20, expired, closeConnection);
    onConnection.push(check);
    sweeper.track(check);
  }
  // Two checks elsewhere, one due, one not.
  sweeper.track(fakeCheck(sweeper, "due", 20, expired));
  const later = fakeCheck(sweeper, "later", 500, expired);
  sweeper.track(later);
  time.advance(20);
  assert.equal(expired.filter((name) => name.startsWith("c")).length, 1, expired.join());
  assert.ok(expired.includes("due"), expired.join());
  assert.ok(!expired.includes("later"));
  assert.equal(sweeper.size, 1);
  assert.equal(later.slot, 0);
  time.advance(500);
  assert.ok(expired.includes("later"));
});

Deno.test("ProbeSweeper moves the last check into a freed slot and keeps every slot right", () => {
  const { time, sweeper, expired } = setUp();
  const checks = Array.from({ length: 6 }, (_, i) => fakeCheck(sweeper, `${i}`, 100 + i, expired));
  for (const check of checks) sweeper.track(check);
  sweeper.untrack(checks[1]);
  sweeper.untrack(checks[4]);
  assert.equal(sweeper.size, 4);
  const tracked = checks.filter((check) => check.slot >= 0);
  assert.deepEqual(tracked.map((check) => check.slot).sort(), [0, 1, 2, 3]);
  time.advance(200);
  assert.deepEqual(expired.sort(), ["0", "2", "3", "5"]);
  assert.equal(sweeper.size, 0);
});

Deno.test("ProbeSweeper.stop() clears the timer at once with no check in flight, and not while one is", () => {
  const { time, sweeper, expired } = setUp();
  const check = fakeCheck(sweeper, "a", 40, expired);
  sweeper.track(check);
  sweeper.stop();
  assert.equal(time.running, 1, "a check in flight is still timed");
  time.advance(40);
  assert.deepEqual(expired, ["a"]);
  sweeper.track(fakeCheck(sweeper, "b", 40, expired)); // due at 80, on the timer running
  sweeper.untrack(fakeCheck(sweeper, "never tracked", 40, expired));
  time.advance(SWEEP_MS);
  sweeper.stop();
  assert.equal(time.running, 1);
  time.advance(30);
  assert.deepEqual(expired, ["a", "b"]);
  assert.equal(time.running, 1, "the sweep that ended the last check leaves the timer on");
  sweeper.stop();
  assert.equal(time.running, 0, "stopped at once with none in flight");
  assert.ok(!sweeper.running);
  sweeper.stop(); // again: nothing
  sweeper.track(fakeCheck(sweeper, "c", 10, expired));
  assert.equal(time.running, 1, "a check tracked after stop() starts it again");
  time.advance(10);
  assert.deepEqual(expired, ["a", "b", "c"]);
});
