/**
 * `least_load`: the server with the lowest estimated load.
 *
 * The original system picked the lowest *reported* CPU load, and so sent every request between
 * two reports to the same server. Here the estimate is
 *
 *     reported cpu_load + (reported in-flight + picks sent since that report) * pickCostPercent
 *
 * so each pick makes its server look busier until the server's next report supersedes the
 * guess. A server that has not reported yet, or whose last report is older than
 * `staleAfterMs`, is not idle: it is assumed as loaded as the average reporting server, and the
 * picks sent to it count on top, so it is neither flooded nor starved. Ties go to the first
 * server after the last one picked, so equal servers rotate.
 *
 * Cost: one pass over the servers per pick (issue 4 replaces it with an indexed heap).
 *
 * @module
 */
import { indexAfterId, NO_SERVERS, type Policy, type Snapshot } from "./types.ts";

/** Load, in percentage points, that one outstanding task adds to the estimate. */
export const DEFAULT_PICK_COST_PERCENT = 10;
/** A report older than this is treated as unknown. */
export const DEFAULT_STALE_AFTER_MS = 5_000;

/** Options of {@linkcode leastLoad}. */
export interface LeastLoadOptions {
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
  /** Id of the server named last, where the next tie-breaking scan starts; -1 at first. */
  lastId: number;
  /** `picks[i]`: picks sent to `snapshot.servers[i]` since its report `seqs[i]`. */
  readonly picks: Float64Array;
  /** `seqs[i]`: the report sequence `picks[i]` counts from (-1: no report yet). */
  readonly seqs: Float64Array;
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
  return {
    name: "least_load",
    prepare(snapshot, context) {
      return carryOver(snapshot, context?.previous, context?.previousSnapshot);
    },
    pick(snapshot, state, context) {
      const servers = snapshot.servers;
      const n = servers.length;
      if (n === 0) return NO_SERVERS;
      const { picks } = state;
      // The assumed load of a server without a fresh report: the mean of the fresh ones.
      let freshSum = 0;
      let freshCount = 0;
      for (let i = 0; i < n; i++) {
        const load = servers[i].load;
        if (load !== undefined && context.nowMs - load.reportedAtMs <= staleAfterMs) {
          freshSum += load.cpuLoad;
          freshCount++;
        }
      }
      const assumed = freshCount === 0 ? 0 : freshSum / freshCount;
      let start = indexAfterId(servers, state.lastId);
      if (start === n) start = 0;
      let best = -1;
      let bestEstimate = Infinity;
      for (let k = 0; k < n; k++) {
        const i = start + k < n ? start + k : start + k - n;
        const load = servers[i].load;
        const fresh = load !== undefined && context.nowMs - load.reportedAtMs <= staleAfterMs;
        const estimate = fresh
          ? load.cpuLoad + (load.inFlight + picks[i]) * pickCost
          : assumed + picks[i] * pickCost;
        if (estimate < bestEstimate) {
          bestEstimate = estimate;
          best = i;
        }
      }
      picks[best]++;
      state.lastId = servers[best].id;
      return snapshot.picks[best];
    },
  };
}

/** Slow path: per-server counters for `snapshot`, kept for servers whose report is unchanged. */
function carryOver(
  snapshot: Snapshot,
  previous: LeastLoadState | undefined,
  previousSnapshot: Snapshot | undefined,
): LeastLoadState {
  const n = snapshot.servers.length;
  const state: LeastLoadState = {
    lastId: previous?.lastId ?? -1,
    picks: new Float64Array(n),
    seqs: new Float64Array(n),
  };
  const before = new Map<number, number>();
  if (previous && previousSnapshot) {
    previousSnapshot.servers.forEach((server, i) => before.set(server.id, i));
  }
  for (let i = 0; i < n; i++) {
    const server = snapshot.servers[i];
    const seq = server.load?.seq ?? -1;
    state.seqs[i] = seq;
    const j = before.get(server.id);
    if (previous && j !== undefined && previous.seqs[j] === seq) state.picks[i] = previous.picks[j];
  }
  return state;
}
