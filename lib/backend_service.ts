/**
 * The `Backend` service handler: runs SIMPLE tasks at once and CPU_HEAVY tasks on the worker
 * pool. An unknown or empty `task_type` is INVALID_ARGUMENT naming the accepted values (the
 * original answered it with a success whose text said "Unknown task type", hiding the
 * client's bug).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { ITERATIONS_PER_UNIT } from "./cpu_work.ts";
import type { TaskRequest, TaskResponse } from "./proto.ts";
import { statusError } from "./status.ts";
import type { WorkerPool } from "./worker_pool.ts";

/** Accepted `task_type` values. */
export const TASK_TYPES = ["SIMPLE", "CPU_HEAVY"] as const;
/** A task type. */
export type TaskType = typeof TASK_TYPES[number];

/** Longest `task_id` accepted. */
export const MAX_TASK_ID_LENGTH = 1_024;

/** What the handler works on. */
export interface BackendServiceDeps {
  /** This backend's advertised `host:port`, echoed in results. */
  address: string;
  pool: WorkerPool;
  /** Work units per CPU_HEAVY task, already multiplied by the slowdown. */
  workUnits: number;
  /** True once the backend is draining: new tasks are refused with UNAVAILABLE. */
  draining: () => boolean;
}

/** Creates the handlers of the `Backend` service. */
export function createBackendHandlers(deps: BackendServiceDeps): grpc.UntypedServiceImplementation {
  const iterations = Math.round(deps.workUnits * ITERATIONS_PER_UNIT);
  const ProcessTask: grpc.handleUnaryCall<TaskRequest, TaskResponse> = (call, callback) => {
    const { task_id, task_type } = call.request;
    if (!(TASK_TYPES as readonly string[]).includes(task_type)) {
      return callback(
        statusError(
          grpc.status.INVALID_ARGUMENT,
          `task_type must be one of ${TASK_TYPES.join(", ")}: got '${task_type}'`,
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
      return callback(null, { result: `Task ${task_id} (SIMPLE) done by ${deps.address}` });
    }
    deps.pool.run(iterations).then(
      (checksum) =>
        callback(null, {
          result: `Task ${task_id} (CPU_HEAVY) done by ${deps.address}: checksum ${checksum}`,
        }),
      (error: Error) =>
        callback(statusError(grpc.status.UNAVAILABLE, `Task ${task_id} aborted: ${error.message}`)),
    );
  };
  return { ProcessTask } as grpc.UntypedServiceImplementation;
}
