/**
 * An earliest-deadline-first scheduler, as in gRPC's weighted round robin (gRFC A58) and Envoy:
 * the entry with the earliest deadline is named next and its deadline moves on by
 * `1 / weights[i]`, so each entry is named in proportion to its weight (equal weights give plain
 * round robin). {@linkcode createEdfScheduler} is the slow path; {@linkcode nextIndex} the hot
 * path: no allocation, O(log n) with a binary min-heap in typed arrays.
 *
 * @module
 */

/**
 * State of an EDF scheduler. Build it with {@linkcode createEdfScheduler} and advance it only
 * with {@linkcode nextIndex}; the arrays are exposed for inspection, not for writing.
 */
export interface EdfScheduler {
  /** `periods[i]`: `1 / weights[i]`, what entry `i`'s deadline moves on by when it is named. */
  readonly periods: Float64Array;
  /** `deadlines[i]`: when entry `i` is due. */
  readonly deadlines: Float64Array;
  /** Entry indices as a binary min-heap ordered by deadline, then by index. */
  readonly heap: Int32Array;
}

/**
 * Slow path: a scheduler over `weights` (all positive and finite).
 *
 * Each initial deadline is offset by `rng() * (1 / weights[i])`, so balancers built at the same
 * moment over the same servers do not all name the same server first. Pass `() => 0` for no
 * offset: ties are broken by index, so the first round then runs in index order.
 *
 * @throws {RangeError} when a weight is not positive and finite, or so small that its inverse
 * is not finite.
 */
export function createEdfScheduler(weights: ArrayLike<number>, rng: () => number): EdfScheduler {
  const n = weights.length;
  const periods = new Float64Array(n);
  const deadlines = new Float64Array(n);
  const heap = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const weight = weights[i];
    const period = 1 / weight;
    if (!(weight > 0) || !Number.isFinite(weight) || !Number.isFinite(period)) {
      throw new RangeError(
        `Cannot create EDF scheduler as 'weights[${i}]' must be positive and finite: current value is ${weight}`,
      );
    }
    periods[i] = period;
    deadlines[i] = rng() * period;
    heap[i] = i;
  }
  for (let k = (n >>> 1) - 1; k >= 0; k--) siftDown(heap, deadlines, k);
  return { periods, deadlines, heap };
}

/**
 * Hot path: the index of the entry named next (-1 when the scheduler has no entry). Moves that
 * entry's deadline on by its period. Synchronous, allocation-free, O(log n).
 */
export function nextIndex(scheduler: EdfScheduler): number {
  const { heap, deadlines } = scheduler;
  if (heap.length === 0) return -1;
  const index = heap[0];
  deadlines[index] += scheduler.periods[index];
  // Only the root's key grew, so one sift down restores the heap.
  siftDown(heap, deadlines, 0);
  return index;
}

/** Moves `heap[k]` down until neither child is due before it (ties: lower index first). */
function siftDown(heap: Int32Array, deadlines: Float64Array, k: number): void {
  const n = heap.length;
  const entry = heap[k];
  const deadline = deadlines[entry];
  for (;;) {
    let child = 2 * k + 1;
    if (child >= n) break;
    let childEntry = heap[child];
    let childDeadline = deadlines[childEntry];
    const right = child + 1;
    if (right < n) {
      const rightEntry = heap[right];
      const rightDeadline = deadlines[rightEntry];
      if (
        rightDeadline < childDeadline ||
        (rightDeadline === childDeadline && rightEntry < childEntry)
      ) {
        child = right;
        childEntry = rightEntry;
        childDeadline = rightDeadline;
      }
    }
    if (deadline < childDeadline || (deadline === childDeadline && entry < childEntry)) break;
    heap[k] = childEntry;
    k = child;
  }
  heap[k] = entry;
}
