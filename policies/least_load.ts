/**
 * `least_load`: the server with the lowest estimated load, exactly, in O(log n) per pick. Picking
 * the lowest *reported* load alone would send every request between two reports to the same
 * server, so the estimate (`_load_estimate.ts`) adds each pick at once:
 *
 *     cpu_load + outstanding tasks × pickCostPercent / slow start factor
 *
 * A stale or missing report counts as the average server, not as idle, and a new server's picks
 * count more while it slow-starts. Servers sit in an indexed min-heap keyed by (estimate, last
 * picked), so equal servers rotate.
 *
 * @module
 */
import { estimateLoad, type LoadEstimate } from "./_load_estimate.ts";
import { checkSlowStart, type SlowStartOptions } from "./slow_start.ts";
import { NO_SERVERS, type Policy, type Snapshot } from "./types.ts";

/** Load, in percentage points, that one outstanding task adds to the estimate. */
export const DEFAULT_PICK_COST_PERCENT = 10;
/** A report older than this is treated as unknown. */
export const DEFAULT_STALE_AFTER_MS = 5_000;
/** How often the estimates are refreshed (the completions they expect since each report). */
export const DEFAULT_LEAST_LOAD_REFRESH_MS = 250;

/** Options of {@linkcode leastLoad}. */
export interface LeastLoadOptions extends SlowStartOptions {
  /**
   * Load in percentage points that one outstanding task adds to the estimate.
   * @default {DEFAULT_PICK_COST_PERCENT}
   */
  pickCostPercent?: number;
  /**
   * Age after which a report is treated as unknown.
   * @default {DEFAULT_STALE_AFTER_MS}
   */
  staleAfterMs?: number;
}

/** State of {@linkcode leastLoad}. */
export interface LeastLoadState {
  /** Counters and estimates at the last prepare. */
  readonly estimate: LoadEstimate;
  /** `picks[i]`: picks sent to `snapshot.servers[i]` since its last report (alias of the estimate's). */
  readonly picks: Float64Array;
  /** Heap key of each server: estimated load now. */
  readonly key: Float64Array;
  /** Load one more own pick adds to each server (`replicas` tasks). */
  readonly step: Float64Array;
  /** Pick sequence number of each server's last pick (0: never), for rotation among equals. */
  readonly lastPick: Float64Array;
  /** Heap of server indices. */
  readonly heap: Int32Array;
  /** Position of each server index in `heap`. */
  readonly pos: Int32Array;
  /** Picks made so far (the sequence behind `lastPick`). */
  counter: number;
}

/** Creates the least load policy. */
export function leastLoad(options: LeastLoadOptions = {}): Policy<LeastLoadState> {
  const pickCost = options.pickCostPercent ?? DEFAULT_PICK_COST_PERCENT;
  const staleAfterMs = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  if (!(pickCost >= 0) || !(staleAfterMs > 0)) {
    throw new RangeError(
      "Cannot create least_load as 'pickCostPercent' must be >= 0 and 'staleAfterMs' > 0",
    );
  }
  const slowStart = checkSlowStart("least_load", options);
  return {
    name: "least_load",
    refreshMs: DEFAULT_LEAST_LOAD_REFRESH_MS,
    prepare(snapshot, context) {
      const estimate = estimateLoad(snapshot, context, staleAfterMs, slowStart);
      const n = snapshot.servers.length;
      const state: LeastLoadState = {
        estimate,
        picks: estimate.picks,
        key: new Float64Array(n),
        step: new Float64Array(n),
        lastPick: carryLastPick(snapshot, context?.previous, context?.previousSnapshot),
        heap: new Int32Array(n),
        pos: new Int32Array(n),
        counter: context?.previous?.counter ?? 0,
      };
      for (let i = 0; i < n; i++) {
        // One outstanding task weighs pickCost (the estimate already counts each own pick
        // `replicas` times); one more own pick adds `replicas` of them.
        const perTask = pickCost / estimate.factor[i];
        state.step[i] = estimate.replicas * perTask;
        state.key[i] = estimate.cpu[i] + estimate.outstanding[i] * perTask;
        state.heap[i] = i;
        state.pos[i] = i;
      }
      for (let k = (n >> 1) - 1; k >= 0; k--) siftDown(state, k);
      return state;
    },
    pick(snapshot, state) {
      if (snapshot.servers.length === 0) return NO_SERVERS;
      const best = state.heap[0];
      state.picks[best]++;
      state.key[best] += state.step[best];
      state.lastPick[best] = ++state.counter;
      siftDown(state, 0);
      return snapshot.picks[best];
    },
  };
}

/** Whether server `a` should be picked before server `b`. */
function before(state: LeastLoadState, a: number, b: number): boolean {
  const ka = state.key[a];
  const kb = state.key[b];
  if (ka !== kb) return ka < kb;
  const la = state.lastPick[a];
  const lb = state.lastPick[b];
  return la !== lb ? la < lb : a < b;
}

function siftDown(state: LeastLoadState, start: number): void {
  const { heap, pos } = state;
  const n = heap.length;
  let k = start;
  const item = heap[k];
  while (true) {
    const left = 2 * k + 1;
    if (left >= n) break;
    const right = left + 1;
    const child = right < n && before(state, heap[right], heap[left]) ? right : left;
    if (!before(state, heap[child], item)) break;
    heap[k] = heap[child];
    pos[heap[k]] = k;
    k = child;
  }
  heap[k] = item;
  pos[item] = k;
}

/** Each server's last pick sequence, carried over by id. */
function carryLastPick(
  snapshot: Snapshot,
  previous: LeastLoadState | undefined,
  previousSnapshot: Snapshot | undefined,
): Float64Array {
  const lastPick = new Float64Array(snapshot.servers.length);
  if (!previous || !previousSnapshot) return lastPick;
  const before = new Map<number, number>();
  previousSnapshot.servers.forEach((server, i) => before.set(server.id, i));
  snapshot.servers.forEach((server, i) => {
    const j = before.get(server.id);
    if (j !== undefined && j < previous.lastPick.length) lastPick[i] = previous.lastPick[j];
  });
  return lastPick;
}
