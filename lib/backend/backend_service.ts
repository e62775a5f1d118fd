/**
 * The `Backend` service handler: runs SIMPLE tasks at once and CPU_HEAVY tasks on the worker
 * pool, or, on a backend that emulates its tasks, by holding one of its slots for a drawn time.
 * An unknown or empty `task_type` is INVALID_ARGUMENT naming the accepted values, so a
 * client's bug is not hidden behind a success.
 *
 * @module
 */
import process from "node:process";
import * as grpc from "@grpc/grpc-js";
import { ITERATIONS_PER_UNIT } from "./cpu_work.ts";
import { type BackendMetrics, measured } from "../ops/metrics.ts";
import type { StatsRequest, StatsResponse, TaskRequest, TaskResponse } from "../wire/proto.ts";
import { statusError, statusName } from "../wire/status.ts";
import { type SlotPool, TaskCancelledError } from "./slot_pool.ts";
import type { RifLatency } from "./rif_latency.ts";
import type { WorkerPool } from "./worker_pool.ts";

/** Accepted `task_type` values. */
export const TASK_TYPES = ["SIMPLE", "CPU_HEAVY"] as const;
/** A task type. */
export type TaskType = typeof TASK_TYPES[number];

/** Longest `task_id` accepted. */
export const MAX_TASK_ID_LENGTH = 1_024;

/** Tasks answered so far, by outcome; the load reporter turns them into rates. */
export interface TaskCounters {
  simple: number;
  heavy: number;
  failed: number;
}

/** Where CPU_HEAVY tasks run: computed on the worker pool, or emulated on slots. */
export type HeavyTasks =
  | {
    pool: WorkerPool;
    /** Work units per CPU_HEAVY task, already multiplied by the slowdown. */
    workUnits: number;
  }
  | { slots: SlotPool };

/** What the handler works on. */
export type BackendServiceDeps = HeavyTasks & {
  /** This backend's advertised `host:port`, echoed in results. */
  address: string;
  /** True once the backend is draining: new tasks are refused with UNAVAILABLE. */
  draining: () => boolean;
  /** Counted into as tasks finish. */
  counters: TaskCounters;
  /** Where task latency and results are counted; none: not counted. */
  metrics?: BackendMetrics;
  /** CPU_HEAVY tasks in flight and their latency by RIF, for Prequal's probes; none: not kept. */
  rifLatency?: RifLatency;
  /** Trailing metadata of every answered task: the backend's ORCA load report; none: none. */
  trailer?: () => grpc.Metadata;
};

/**
 * Runs one CPU_HEAVY task; resolves with what its result says of the work. An emulated task
 * whose call is cancelled (`signal`) while it waits for a slot is dropped; computed tasks run.
 */
function heavyTask(heavy: HeavyTasks): (signal: AbortSignal) => Promise<string> {
  if ("slots" in heavy) {
    return (signal) => heavy.slots.run(signal).then((ms) => `held a slot for ${ms.toFixed(1)} ms`);
  }
  const iterations = Math.round(heavy.workUnits * ITERATIONS_PER_UNIT);
  return () => heavy.pool.run(iterations).then((checksum) => `checksum ${checksum}`);
}

/** Creates the handlers of the `Backend` service. */
export function createBackendHandlers(deps: BackendServiceDeps): grpc.UntypedServiceImplementation {
  const runHeavy = heavyTask(deps);
  const tasks = "slots" in deps ? deps.slots : deps.pool;
  const startedAt = performance.now();
  const counters = deps.counters;
  const ProcessTask: grpc.handleUnaryCall<TaskRequest, TaskResponse> = (call, callback) => {
    const { task_id, task_type } = call.request;
    if (!(TASK_TYPES as readonly string[]).includes(task_type)) {
      return callback(
        statusError(
          grpc.status.INVALID_ARGUMENT,
          `task_type must be one of ${TASK_TYPES.join(", ")}: got '${task_type.slice(0, 100)}'`,
        ),
      );
    }
    if (task_id.length > MAX_TASK_ID_LENGTH) {
      return callback(
        statusError(
          grpc.status.INVALID_ARGUMENT,
          `task_id must be at most ${MAX_TASK_ID_LENGTH} characters: got ${task_id.length}`,
        ),
      );
    }
    if (deps.draining()) {
      return callback(statusError(grpc.status.UNAVAILABLE, `Server ${deps.address} is draining`));
    }
    if (task_type === "SIMPLE") {
      counters.simple++;
      return callback(
        null,
        { result: `Task ${task_id} (SIMPLE) done by ${deps.address}` },
        deps.trailer?.(),
      );
    }
    // A caller past its deadline, or gone, no longer waits: its queued task is dropped.
    const cancelled = new AbortController();
    call.once("cancelled", () => cancelled.abort());
    // SIMPLE tasks take no slot and end at once: only CPU_HEAVY ones are in flight for probes.
    const rif = deps.rifLatency;
    const foundRif = rif?.start() ?? 0;
    const startedMs = performance.now();
    const ended = () => rif?.end(foundRif, performance.now() - startedMs);
    runHeavy(cancelled.signal).finally(ended).then(
      (work) => {
        counters.heavy++;
        callback(
          null,
          { result: `Task ${task_id} (CPU_HEAVY) done by ${deps.address}: ${work}` },
          deps.trailer?.(),
        );
      },
      (error: Error) => {
        if (error instanceof TaskCancelledError) {
          return callback(statusError(grpc.status.CANCELLED, `Task ${task_id}: ${error.message}`));
        }
        counters.failed++;
        callback(statusError(grpc.status.UNAVAILABLE, `Task ${task_id} aborted: ${error.message}`));
      },
    );
  };
  const GetStats: grpc.handleUnaryCall<StatsRequest, StatsResponse> = (_call, callback) => {
    const cpu = process.cpuUsage();
    callback(null, {
      server_address: deps.address,
      cpu_user_us: cpu.user,
      cpu_system_us: cpu.system,
      simple_completed: counters.simple,
      heavy_completed: counters.heavy,
      in_flight: tasks.inFlight,
      uptime_ms: performance.now() - startedAt,
    });
  };
  const metrics = deps.metrics;
  return {
    ProcessTask: metrics
      ? measured(ProcessTask, () => performance.now(), (call, error, seconds) => {
        const type = (TASK_TYPES as readonly string[]).includes(call.request.task_type)
          ? call.request.task_type
          : "other";
        const result = error ? statusName(error.code).toLowerCase() : "ok";
        metrics.taskDuration.observe({ type }, seconds);
        metrics.tasks.inc({ type, result });
      })
      : ProcessTask,
    GetStats,
  } as grpc.UntypedServiceImplementation;
}
