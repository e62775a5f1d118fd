/**
 * A backend's capacity over time, for emulated tasks (`--capacity`, `--capacity-schedule`): the
 * share of its full speed it runs at, from above 0 to 1, changing at given times since it
 * started. Written `0s:1,20s:0.3,40s:1`: full speed, then 0.3 from 20 s (a noisy neighbour),
 * then full speed again from 40 s.
 *
 * @module
 */

/** From `atMs` since start on, tasks run at `capacity` of full speed. */
export interface CapacityStep {
  readonly atMs: number;
  readonly capacity: number;
}

/** Steps in ascending time, the first at 0. */
export type CapacitySchedule = readonly CapacityStep[];

/** What `--capacity-schedule` accepts, for error messages and `--help`. */
export const CAPACITY_SCHEDULE_FORM =
  "T:F,T:F,... with times T (ms or s) ascending from 0s and capacities F above 0 and at most 1, " +
  "e.g. 0s:1,20s:0.3,40s:1";

/** A capacity that never changes. */
export function constantCapacity(capacity: number): CapacitySchedule {
  if (!isCapacity(capacity)) {
    throw new RangeError(`Capacity must be above 0 and at most 1: got ${capacity}`);
  }
  return [{ atMs: 0, capacity }];
}

/** Parses `text` (see the module doc); throws a `RangeError` saying what is accepted. */
export function parseCapacitySchedule(text: string): CapacitySchedule {
  const fail = (why: string): never => {
    throw new RangeError(
      `'${text}' is not a capacity schedule (${why}); use ${CAPACITY_SCHEDULE_FORM}`,
    );
  };
  const steps = text.split(",").map((part): CapacityStep => {
    const match = /^\s*(\d+(?:\.\d+)?)(ms|s):(\d*\.?\d+)\s*$/.exec(part);
    if (!match) return fail(`'${part}' is not T:F`);
    const atMs = Number(match[1]) * (match[2] === "s" ? 1_000 : 1);
    const capacity = Number(match[3]);
    if (!isCapacity(capacity)) fail(`capacity ${match[3]} is not above 0 and at most 1`);
    return { atMs, capacity };
  });
  if (steps[0].atMs !== 0) fail("the first time must be 0s");
  for (let i = 1; i < steps.length; i++) {
    if (steps[i].atMs <= steps[i - 1].atMs) fail("times must be ascending");
  }
  return steps;
}

/** The capacity `elapsedMs` after start. */
export function capacityAt(schedule: CapacitySchedule, elapsedMs: number): number {
  let capacity = schedule[0].capacity;
  for (const step of schedule) {
    if (step.atMs > elapsedMs) break;
    capacity = step.capacity;
  }
  return capacity;
}

function isCapacity(value: number): boolean {
  return value > 0 && value <= 1;
}
