/**
 * `pick_first`: always the first server in the order servers became known, until it goes away;
 * then the next. Useful for active/standby pools, and as the worst case in benchmarks.
 *
 * @module
 */
import { NO_SERVERS, type Policy } from "./types.ts";

/** Creates the pick first policy. It keeps no state. */
export function pickFirst(): Policy<null> {
  return {
    name: "pick_first",
    prepare() {
      return null;
    },
    pick(snapshot) {
      return snapshot.picks.length === 0 ? NO_SERVERS : snapshot.picks[0];
    },
  };
}
