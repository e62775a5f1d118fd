/**
 * What the simulator knows of its servers at this instant, shared read-only with the sim-only
 * policies (`oracle`, `jsq`, `random`), which see it perfectly, unlike the real policies, which
 * see only the servers' load reports.
 *
 * @module
 */

/** The servers' true state, one entry per server (`slotEndMs` has `slots` per server). */
export interface SimServers {
  /** Number of servers. */
  readonly count: number;
  /** Worker slots per server. */
  readonly slots: number;
  /** Capacity factor of each server, 0 < F <= 1: its service times are stretched by 1 / F. */
  readonly capacity: Float64Array;
  /** Mean service time at capacity 1 (ms). */
  readonly meanServiceMs: number;
  /** Busy slots of each server. */
  readonly busy: Int32Array;
  /** Requests waiting for a slot at each server. */
  readonly queued: Int32Array;
  /** Work (ms at capacity 1) of the requests waiting at each server. */
  readonly queuedWorkMs: Float64Array;
  /** When each slot's current request completes (ms); stale for an idle slot. */
  readonly slotEndMs: Float64Array;
}

/** Picks a server index for one request. */
export interface SimPicker {
  /** The server for a request of `clientId` at `nowMs`. */
  pick(clientIndex: number, nowMs: number): number;
}
