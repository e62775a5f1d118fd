/**
 * `power_of_two`: two distinct servers drawn at random, the less loaded wins (the estimate of
 * `_load_estimate.ts`, over the slow start factor). Every picker sending to the single least
 * loaded server from the same stale reports would herd; two random choices keep most of the
 * benefit without the herd (Mitzenmacher), as Envoy, Linkerd and gRPC do. O(1) per pick.
 *
 * @module
 */
import { estimateLoad, type LoadEstimate } from "./_load_estimate.ts";
import { DEFAULT_LEAST_LOAD_REFRESH_MS, DEFAULT_STALE_AFTER_MS } from "./least_load.ts";
import { checkSlowStart, type SlowStartOptions } from "./slow_start.ts";
import { NO_SERVERS, type Policy } from "./types.ts";

/** Options of {@linkcode powerOfTwo}. */
export interface PowerOfTwoOptions extends SlowStartOptions {
  /** Age after which a report is treated as unknown. @default {DEFAULT_STALE_AFTER_MS} */
  staleAfterMs?: number;
}

/** State of {@linkcode powerOfTwo}. */
export interface PowerOfTwoState {
  /** Counters and estimates at the last prepare. */
  readonly estimate: LoadEstimate;
  /** Outstanding tasks now, by server: the estimate plus picks since it was made. */
  readonly outstanding: Float64Array;
}

/** Creates the power of two choices policy. */
export function powerOfTwo(options: PowerOfTwoOptions = {}): Policy<PowerOfTwoState> {
  const staleAfterMs = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  if (!(staleAfterMs > 0)) {
    throw new RangeError(
      `Cannot create power_of_two as 'staleAfterMs' must be > 0: current value is ${staleAfterMs}`,
    );
  }
  const slowStart = checkSlowStart("power_of_two", options);
  return {
    name: "power_of_two",
    refreshMs: DEFAULT_LEAST_LOAD_REFRESH_MS,
    prepare(snapshot, context) {
      const estimate = estimateLoad(snapshot, context, staleAfterMs, slowStart);
      return { estimate, outstanding: estimate.outstanding.slice() };
    },
    pick(snapshot, state, context) {
      const n = snapshot.servers.length;
      if (n === 0) return NO_SERVERS;
      let chosen = 0;
      if (n > 1) {
        const a = Math.floor(context.rng() * n);
        let b = Math.floor(context.rng() * (n - 1));
        if (b >= a) b++;
        const { outstanding } = state;
        const { factor } = state.estimate;
        // +1: the task about to be sent, so an idle slow-starting server is not free.
        const loadA = (outstanding[a] + 1) / factor[a];
        const loadB = (outstanding[b] + 1) / factor[b];
        chosen = loadB < loadA ? b : a;
      }
      state.outstanding[chosen] += state.estimate.replicas;
      state.estimate.picks[chosen]++;
      return snapshot.picks[chosen];
    },
  };
}
