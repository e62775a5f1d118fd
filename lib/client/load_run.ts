/**
 * Drives a {@linkcode TaskClient} with `concurrency` loops for a number of requests or a
 * duration, and summarises what it saw: throughput, latency percentiles, failures by status and
 * by cause, and the count per server.
 *
 * @module
 */
import { LatencyRecorder, type LatencySummary } from "./latency.ts";
import { statusName } from "../wire/status.ts";
import type { TaskClient, TaskOutcome } from "./task_client.ts";

/** Options of {@linkcode runLoad}. */
export interface LoadRunOptions {
  client: TaskClient;
  /** `SIMPLE` or `CPU_HEAVY`; `LOOKUP` sends only `GetServer` (measures the balancer alone). */
  taskType: string;
  /** Stop after this many requests in all... */
  requests?: number;
  /** ...or after this long (whichever is given; requests wins if both). */
  durationMs?: number;
  /**
   * Closed loop (no `ratePerS`): this many loops, each sending its next task when the last one
   * returns. Open loop: the most tasks in flight; arrivals beyond it wait in the client, and
   * their wait counts in their latency.
   */
  concurrency: number;
  /**
   * Open loop: tasks arrive at this mean rate per second, Poisson (exponential gaps), whether or
   * not earlier ones have returned; each task's latency runs from its scheduled arrival, so a slow
   * answer cannot hide the delay it causes (no coordinated omission).
   */
  ratePerS?: number;
  /** Randomness of the open loop's arrivals (uniform on [0, 1)). @default {Math.random} */
  rng?: () => number;
  /** Prefix of task ids. */
  idPrefix?: string;
  /** Called about every `progressEveryMs` while running. */
  onProgress?: (progress: LoadProgress) => void;
  /** @default {250} */
  progressEveryMs?: number;
}

/** A progress sample. */
export interface LoadProgress {
  completed: number;
  failed: number;
  elapsedMs: number;
  /** Fraction done, 0 to 1. */
  fraction: number;
  /** p99 latency (ms) of the tasks completed since the previous sample (0 if none). */
  windowP99Ms: number;
}

/** Distinct failure causes a summary keeps; failures of other causes count as `otherFailures`. */
export const MAX_FAILURE_CAUSES = 10;
/** Characters of a failure's message a summary keeps. */
export const MAX_FAILURE_MESSAGE_CHARS = 300;

/** Failed tasks that ended the same way: same status, same message, same server. */
export interface FailureCause {
  /** gRPC status name, e.g. `UNAVAILABLE`. */
  code: string;
  /** The cause of its last attempt, cut to {@linkcode MAX_FAILURE_MESSAGE_CHARS} characters. */
  message: string;
  /** The server its last attempt went to; absent when there was none (`GetServer` failed). */
  server?: string;
  /** Failed tasks with this cause. */
  count: number;
}

/** What one load run measured. */
export interface LoadRunSummary {
  requests: number;
  succeeded: number;
  failed: number;
  /** Failures by gRPC status name. */
  failuresByCode: Record<string, number>;
  /**
   * Why tasks failed: the first {@linkcode MAX_FAILURE_CAUSES} distinct causes seen, the most
   * frequent first.
   */
  failureCauses: FailureCause[];
  /** Failures whose cause was not among `failureCauses` (first met after those were full). */
  otherFailures: number;
  /** Tasks that needed more than one attempt. */
  retried: number;
  durationS: number;
  /** Successful requests per second. */
  throughput: number;
  /** Latency of successful requests (lookup, task and retries), in ms. */
  latencyMs: LatencySummary;
  /** Successful requests per server address. */
  perServer: Record<string, number>;
  /** The latency histogram, compressed base64 (see `LatencyRecorder.merge`). */
  histogram: string;
}

/** Runs the load and resolves with its summary. */
export async function runLoad(options: LoadRunOptions): Promise<LoadRunSummary> {
  const { client, taskType, concurrency } = options;
  if (options.requests === undefined && options.durationMs === undefined) {
    throw new TypeError("Cannot run load as neither 'requests' nor 'durationMs' is given");
  }
  const latency = new LatencyRecorder();
  const window = new LatencyRecorder();
  const perServer: Record<string, number> = {};
  const failuresByCode: Record<string, number> = {};
  const causes = new FailureCauses();
  let started = 0;
  let succeeded = 0;
  let failed = 0;
  let retried = 0;
  const t0 = performance.now();
  const endAt = options.durationMs === undefined ? Infinity : t0 + options.durationMs;
  const limit = options.requests ?? Infinity;
  const prefix = options.idPrefix ?? "task";

  const fraction = () =>
    Math.min(
      1,
      options.requests !== undefined
        ? (succeeded + failed) / options.requests
        : (performance.now() - t0) / options.durationMs!,
    );
  // A first sample at once tells an observing process that the load has started.
  options.onProgress?.({ completed: 0, failed: 0, elapsedMs: 0, fraction: 0, windowP99Ms: 0 });
  const timer = options.onProgress
    ? setInterval(() => {
      const windowP99Ms = window.summary().p99;
      window.reset();
      options.onProgress!({
        completed: succeeded,
        failed,
        elapsedMs: performance.now() - t0,
        fraction: fraction(),
        windowP99Ms,
      });
    }, options.progressEveryMs ?? 250)
    : undefined;

  /** Counts one finished task whose latency runs from `begin`. */
  const record = (outcome: TaskOutcome, begin: number) => {
    if (outcome.attempts > 1) retried++;
    if (outcome.ok) {
      succeeded++;
      const ms = performance.now() - begin;
      latency.record(ms);
      window.record(ms);
      perServer[outcome.server] = (perServer[outcome.server] ?? 0) + 1;
    } else {
      failed++;
      const name = statusName(outcome.code);
      failuresByCode[name] = (failuresByCode[name] ?? 0) + 1;
      causes.add(name, outcome.message, outcome.server);
    }
  };
  const send = (): Promise<TaskOutcome> => {
    const id = `${prefix}-${started++}`;
    return taskType === LOOKUP ? lookup(client) : client.run(id, taskType);
  };

  const loop = async () => {
    while (started < limit && performance.now() < endAt) {
      const begin = performance.now();
      record(await send(), begin);
    }
  };
  try {
    if (options.ratePerS === undefined) {
      await Promise.all(Array.from({ length: concurrency }, loop));
    } else {
      await openLoop({
        t0,
        endAt,
        limit,
        concurrency,
        gapMs: () => -Math.log(1 - (options.rng ?? Math.random)()) * 1_000 / options.ratePerS!,
        send,
        record,
      });
    }
  } finally {
    clearInterval(timer);
  }
  const durationS = (performance.now() - t0) / 1_000;
  options.onProgress?.({
    completed: succeeded,
    failed,
    elapsedMs: durationS * 1_000,
    fraction: 1,
    windowP99Ms: window.summary().p99,
  });
  return {
    requests: succeeded + failed,
    succeeded,
    failed,
    failuresByCode,
    failureCauses: causes.list(),
    otherFailures: causes.other,
    retried,
    durationS: round(durationS, 3),
    throughput: round(durationS > 0 ? succeeded / durationS : 0, 2),
    latencyMs: latency.summary(),
    perServer,
    histogram: latency.encode(),
  };
}

/**
 * Sends tasks at scheduled arrival times (the first at `t0`, then `gapMs()` apart) until `endAt`
 * or `limit` arrivals, at most `concurrency` in flight; resolves once every task has finished.
 */
function openLoop(o: {
  t0: number;
  endAt: number;
  limit: number;
  concurrency: number;
  gapMs: () => number;
  send: () => Promise<TaskOutcome>;
  record: (outcome: TaskOutcome, scheduledAt: number) => void;
}): Promise<void> {
  return new Promise((resolve) => {
    /** Scheduled times of arrivals waiting for a slot, oldest first from `head`. */
    const waiting: number[] = [];
    let head = 0;
    let inFlight = 0;
    let arrivals = 0;
    let nextAt = o.t0;
    let arriving = true;
    const start = (scheduledAt: number) => {
      inFlight++;
      o.send().then((outcome) => {
        o.record(outcome, scheduledAt);
        inFlight--;
        if (head < waiting.length) start(waiting[head++]);
        else if (!arriving && inFlight === 0) resolve();
      });
    };
    const arrive = () => {
      const now = performance.now();
      while (nextAt <= now && nextAt < o.endAt && arrivals < o.limit) {
        arrivals++;
        if (inFlight < o.concurrency) start(nextAt);
        else waiting.push(nextAt);
        nextAt += o.gapMs();
      }
      if (nextAt >= o.endAt || arrivals >= o.limit) {
        arriving = false;
        if (inFlight === 0 && head >= waiting.length) resolve();
        return;
      }
      setTimeout(arrive, Math.max(0, nextAt - performance.now()));
    };
    arrive();
  });
}

/** The `taskType` that sends only `GetServer`. */
export const LOOKUP = "LOOKUP";

async function lookup(client: TaskClient): Promise<TaskOutcome> {
  try {
    const server = await client.getServer();
    return { ok: true, server, result: "", attempts: 1 };
  } catch (error) {
    const e = error as { code?: number; details?: string; message: string };
    const message = e.details || e.message;
    return { ok: false, server: undefined, code: e.code ?? 2, message, attempts: 1 };
  }
}

/** Counts failures by cause, keeping at most {@linkcode MAX_FAILURE_CAUSES} distinct ones. */
class FailureCauses {
  #causes = new Map<string, FailureCause>();
  #other = 0;

  /** Failures whose cause was new once {@linkcode MAX_FAILURE_CAUSES} were kept. */
  get other(): number {
    return this.#other;
  }

  /** Counts one failure; `message` is cut to {@linkcode MAX_FAILURE_MESSAGE_CHARS}. */
  add(code: string, message: string, server: string | undefined): void {
    const text = message.length > MAX_FAILURE_MESSAGE_CHARS
      ? `${message.slice(0, MAX_FAILURE_MESSAGE_CHARS - 3)}...`
      : message;
    const key = JSON.stringify([code, text, server]);
    const known = this.#causes.get(key);
    if (known) known.count++;
    else if (this.#causes.size < MAX_FAILURE_CAUSES) {
      this.#causes.set(key, { code, message: text, ...(server ? { server } : {}), count: 1 });
    } else this.#other++;
  }

  /** The causes, the most frequent first (the first seen first among equals). */
  list(): FailureCause[] {
    return [...this.#causes.values()].sort((a, b) => b.count - a.count);
  }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
