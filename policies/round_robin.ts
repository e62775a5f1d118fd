/**
 * `round_robin`: every server in turn. The cursor is the id of the last server named, not an
 * index, so a server added or removed mid-rotation neither skips nor repeats the others: the next
 * pick is the first server with a greater id (a binary search), wrapping to the start.
 *
 * @module
 */
import { indexAfterId, NO_SERVERS, type Policy } from "./types.ts";

/** State of {@linkcode roundRobin}. */
export interface RoundRobinState {
  /** Id of the server named last; -1 before the first pick. */
  lastId: number;
}

/** Creates the round robin policy. */
export function roundRobin(): Policy<RoundRobinState> {
  return {
    name: "round_robin",
    prepare(_snapshot, context) {
      return context?.previous ?? { lastId: -1 };
    },
    pick(snapshot, state) {
      const servers = snapshot.servers;
      if (servers.length === 0) return NO_SERVERS;
      let index = indexAfterId(servers, state.lastId);
      if (index === servers.length) index = 0;
      state.lastId = servers[index].id;
      return snapshot.picks[index];
    },
  };
}
