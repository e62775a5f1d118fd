/**
 * Emulated worker slots (`--service-time`): a task holds one of `slots` slots for a time drawn
 * from a service-time distribution, divided by the backend's capacity at the moment it gets the
 * slot, and burns no CPU meanwhile. Tasks beyond the slots wait in a FIFO queue, as on
 * {@linkcode WorkerPool}, and their wait is part of their latency. The clock, the timer and the
 * randomness are parameters, so a test can drive the pool without waiting.
 *
 * @module
 */
import { capacityAt, type CapacitySchedule, constantCapacity } from "./capacity_schedule.ts";
import type { LoadMeter } from "./cpu_meter.ts";
import { sampleServiceTime, type ServiceTime } from "./service_time.ts";
import { PoolClosedError } from "./worker_pool.ts";

/** The clock and timer a {@linkcode SlotPool} runs on; times are in ms. */
export interface SlotClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** `performance.now()` and the runtime's timers. */
export const REAL_CLOCK: SlotClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/** Options of {@linkcode SlotPool}. */
export interface SlotPoolOptions {
  /** How many tasks run at once. */
  slots: number;
  /** How long a task holds its slot at full capacity. */
  serviceTime: ServiceTime;
  /** Capacity over time since the pool was created. @default {constant 1} */
  capacity?: CapacitySchedule;
  /** Uniform on [0, 1). @default {Math.random} */
  rng?: () => number;
  /** @default {REAL_CLOCK} */
  clock?: SlotClock;
}

interface Job {
  resolve: (heldMs: number) => void;
  reject: (error: Error) => void;
  timer?: unknown;
  /** Stops listening for the caller giving up (once the job has its slot). */
  forget?: () => void;
}

/** A task whose caller gave up (its call was cancelled) while it waited for a slot. */
export class TaskCancelledError extends Error {
  constructor() {
    super("the call was cancelled while the task waited for a slot");
    this.name = "TaskCancelledError";
  }
}

/** Runs emulated tasks on a fixed number of slots. */
export class SlotPool {
  readonly #slots: number;
  readonly #serviceTime: ServiceTime;
  readonly #capacity: CapacitySchedule;
  readonly #rng: () => number;
  readonly #clock: SlotClock;
  readonly #startMs: number;
  #running = new Set<Job>();
  #queue: Job[] = [];
  #closed = false;
  /** Slot-ms spent busy up to `#accountedAtMs`. */
  #busySlotMs = 0;
  #accountedAtMs: number;

  /** Creates the pool; the capacity schedule's time starts now. */
  constructor(options: SlotPoolOptions) {
    if (!Number.isInteger(options.slots) || options.slots < 1) {
      throw new RangeError(`Cannot create slot pool as 'slots' must be >= 1: got ${options.slots}`);
    }
    this.#slots = options.slots;
    this.#serviceTime = options.serviceTime;
    this.#capacity = options.capacity ?? constantCapacity(1);
    this.#rng = options.rng ?? Math.random;
    this.#clock = options.clock ?? REAL_CLOCK;
    this.#startMs = this.#clock.now();
    this.#accountedAtMs = this.#startMs;
  }

  /** How many tasks can hold a slot at once. */
  get slots(): number {
    return this.#slots;
  }

  /** Tasks holding a slot or waiting. */
  get inFlight(): number {
    return this.#running.size + this.#queue.length;
  }

  /** Tasks waiting for a slot. */
  get queueLength(): number {
    return this.#queue.length;
  }

  /** Slot-ms spent busy since the pool was created (a task counts from when it got its slot). */
  busySlotMs(): number {
    this.#account();
    return this.#busySlotMs;
  }

  /**
   * Runs one task: waits for a slot, holds it; resolves with the ms it held it. When `signal`
   * aborts while the task waits (its caller gave up), the task leaves the queue and rejects with
   * {@linkcode TaskCancelledError}, as a server skips work nobody waits for; once it holds a slot
   * it runs to the end.
   */
  run(signal?: AbortSignal): Promise<number> {
    if (this.#closed) return Promise.reject(new PoolClosedError());
    if (signal?.aborted) return Promise.reject(new TaskCancelledError());
    return new Promise((resolve, reject) => {
      const job: Job = { resolve, reject };
      if (signal) {
        const onAbort = () => {
          const i = this.#queue.indexOf(job);
          if (i < 0) return;
          this.#queue.splice(i, 1);
          reject(new TaskCancelledError());
        };
        signal.addEventListener("abort", onAbort, { once: true });
        job.forget = () => signal.removeEventListener("abort", onAbort);
      }
      this.#queue.push(job);
      this.#dispatch();
    });
  }

  /** Stops the pool; running and queued tasks reject with {@linkcode PoolClosedError}. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#account();
    for (const job of this.#running) {
      this.#clock.clearTimeout(job.timer);
      job.reject(new PoolClosedError());
    }
    for (const job of this.#queue) job.reject(new PoolClosedError());
    this.#running.clear();
    this.#queue = [];
  }

  #dispatch(): void {
    while (this.#running.size < this.#slots && this.#queue.length > 0) {
      const job = this.#queue.shift()!;
      job.forget?.();
      this.#account();
      this.#running.add(job);
      const capacity = capacityAt(this.#capacity, this.#accountedAtMs - this.#startMs);
      const heldMs = sampleServiceTime(this.#serviceTime, this.#rng) / capacity;
      job.timer = this.#clock.setTimeout(() => this.#done(job, heldMs), heldMs);
    }
  }

  #done(job: Job, heldMs: number): void {
    if (!this.#running.has(job)) return;
    this.#account();
    this.#running.delete(job);
    job.resolve(heldMs);
    this.#dispatch();
  }

  /** Adds the busy slot-time since the last change of the busy count. */
  #account(): void {
    const now = this.#clock.now();
    this.#busySlotMs += this.#running.size * (now - this.#accountedAtMs);
    this.#accountedAtMs = now;
  }
}

/**
 * The utilization of a {@linkcode SlotPool} between calls: busy slot-time over slots times the
 * interval, in percent, what an emulating backend reports in place of its (idle) CPU.
 */
export class SlotMeter implements LoadMeter {
  readonly #pool: SlotPool;
  readonly #clock: SlotClock;
  #lastBusyMs: number;
  #lastAtMs: number;

  /** Starts measuring `pool` now. */
  constructor(pool: SlotPool, clock: SlotClock = REAL_CLOCK) {
    this.#pool = pool;
    this.#clock = clock;
    this.#lastBusyMs = pool.busySlotMs();
    this.#lastAtMs = clock.now();
  }

  /** Busy slots since the previous call (or since creation), in percent, 0 to 100. */
  sample(): number {
    const busyMs = this.#pool.busySlotMs();
    const now = this.#clock.now();
    const elapsedMs = now - this.#lastAtMs;
    const percent = ((busyMs - this.#lastBusyMs) / (elapsedMs * this.#pool.slots)) * 100;
    this.#lastBusyMs = busyMs;
    this.#lastAtMs = now;
    return elapsedMs > 0 && Number.isFinite(percent) ? Math.min(100, Math.max(0, percent)) : 0;
  }
}
