/**
 * The deadlines of health checks in flight: one timer looks at every check every
 * {@linkcode SWEEP_MS} and fails those past their deadline, rather than one timer per check,
 * whose making and clearing at the checker's rate is garbage the balancer then collects. A
 * deadline is therefore up to one sweep late.
 *
 * The timer runs only while checks are in flight: it starts with the first one tracked and stops
 * at the first sweep that finds none (not when the last one ends: with checks coming and going
 * all the time, a timer made and cleared at each gap would be garbage too). Its owner (the
 * `HealthChecker`, or a probe on its own) makes one, passes it to its probes, and stops it with
 * {@linkcode ProbeSweeper.stop} when it stops. The clock and the timer are passed in, so a test
 * drives it with a fake clock.
 *
 * @module
 */

/** How often the checks in flight are looked at for their deadlines (ms). */
export const SWEEP_MS = 10;

/**
 * A sweep later than this ran after a stall of this process itself (GC, CPU starved), not of
 * the server: answers may be waiting unread behind it, so the checks past their deadline get one
 * more look (see {@linkcode ProbeSweeper}). Without it, one stall of the balancer fails every
 * check in flight at once and ejects every server.
 */
export const LATE_TIMER_MS = 100;

/** A check in flight, as the sweeper sees it. */
export interface SweptCheck {
  /** Its timeout: how far its deadline is when tracked, and the most a late sweep adds. */
  timeoutMs: number;
  /** When it fails unanswered, on the sweeper's clock (set by {@linkcode ProbeSweeper.track}). */
  deadline: number;
  /** The deadline was moved once already, after a stall of this process. */
  extended: boolean;
  /** Its index in the sweeper while tracked; -1 otherwise. */
  slot: number;
  /**
   * Fails the check, past its deadline; it must be untracked by then (the sweeper reads no more
   * of it). It may end other checks too (its connection closing).
   */
  expire(): void;
}

/** The interval timer a sweeper runs on: the global one, or a fake in tests. */
export interface SweepTimers {
  /** Calls `callback` every `ms` until cleared; returns the id `clearInterval` takes. */
  setInterval(callback: () => void, ms: number): unknown;
  clearInterval(id: unknown): void;
}

/** Options of {@linkcode ProbeSweeper}. */
export interface ProbeSweeperOptions {
  /** Milliseconds on a monotonic clock; check deadlines are on it. @default {performance.now} */
  clock?: () => number;
  /** @default {globalThis's setInterval and clearInterval} */
  timers?: SweepTimers;
}

const GLOBAL_TIMERS: SweepTimers = {
  setInterval: (callback, ms) => setInterval(callback, ms),
  clearInterval: (id) => clearInterval(id as ReturnType<typeof setInterval>),
};

/** Times every health check in flight of its owner, with one timer. */
export class ProbeSweeper {
  #clock: () => number;
  #timers: SweepTimers;
  /**
   * Checks in flight, in `#inFlight[0..#count)`, each at its `slot`; removed by moving the last
   * one into its place. An array that never shrinks rather than a `Set`: a `Set` rebuilds its
   * table as checks come and go, and tables promoted to V8's old generation keep the young
   * checks they pointed at alive through the next scavenges.
   */
  #inFlight: (SweptCheck | undefined)[] = [];
  #count = 0;
  /** The timer's id while it runs. */
  #timer: unknown;
  #lastSweep = 0;

  /** Creates a sweeper; its timer starts with the first check tracked. */
  constructor(options: ProbeSweeperOptions = {}) {
    this.#clock = options.clock ?? (() => performance.now());
    this.#timers = options.timers ?? GLOBAL_TIMERS;
  }

  /** Checks in flight. */
  get size(): number {
    return this.#count;
  }

  /** Whether its timer is running. */
  get running(): boolean {
    return this.#timer !== undefined;
  }

  /**
   * Times `check` until it is untracked, its deadline `timeoutMs` from now; starts the timer if
   * it is not running.
   */
  track(check: SweptCheck): void {
    check.deadline = this.#clock() + check.timeoutMs;
    check.extended = false;
    check.slot = this.#count;
    if (this.#count === this.#inFlight.length) this.#inFlight.push(check);
    else this.#inFlight[this.#count] = check;
    this.#count++;
    if (this.#timer === undefined) {
      this.#lastSweep = this.#clock();
      this.#timer = this.#timers.setInterval(this.#sweep, SWEEP_MS);
    }
  }

  /** Stops timing `check` (nothing if it is not tracked). */
  untrack(check: SweptCheck): void {
    const slot = check.slot;
    if (slot < 0) return;
    check.slot = -1;
    const last = this.#inFlight[--this.#count]!;
    this.#inFlight[this.#count] = undefined;
    if (last !== check) {
      this.#inFlight[slot] = last;
      last.slot = slot;
    }
  }

  /**
   * Stops the timer now if no check is in flight, rather than at its next sweep. Checks still
   * in flight (on a connection that was going away when its probe closed) are timed to their
   * end as usual, and the timer stops at the first sweep after. A check tracked later starts it
   * again.
   */
  stop(): void {
    if (this.#count > 0 || this.#timer === undefined) return;
    this.#timers.clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Fails the checks past their deadline. A sweep that runs more than {@linkcode LATE_TIMER_MS}
   * late means this process stalled, and answers may be waiting unread: the checks past their
   * deadline then get one more look, as long as the stall (at most their timeout), after the
   * I/O they missed; a hung server still fails them.
   */
  #sweep = (): void => {
    if (this.#count === 0) {
      this.#timers.clearInterval(this.#timer);
      this.#timer = undefined;
      return;
    }
    const now = this.#clock();
    const late = now - this.#lastSweep - SWEEP_MS;
    this.#lastSweep = now;
    // From the end: a check ended here moves the last one into its slot, already looked at.
    for (let i = this.#count - 1; i >= 0; i--) {
      // A check failed below can end others (its connection closing): skip the slots now empty.
      if (i >= this.#count) continue;
      const check = this.#inFlight[i]!;
      if (now < check.deadline) continue;
      if (late > LATE_TIMER_MS && !check.extended) {
        check.extended = true;
        check.deadline = now + Math.min(late, check.timeoutMs);
        continue;
      }
      check.expire();
    }
  };
}
