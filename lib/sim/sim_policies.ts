/**
 * Simulator-only reference policies with perfect knowledge of every server: `oracle` (the
 * least expected completion time), `jsq` (join the shortest queue) and `random`. They read the
 * simulator's true state at the instant of the request, so no real balancer can run them; they
 * frame what the real policies achieve.
 *
 * @module
 */
import type { SimPicker, SimServers } from "./sim_state.ts";

/** The sim-only policies, by name. */
export const SIM_POLICY_NAMES = ["oracle", "jsq", "random"] as const;

/** A sim-only policy name. */
export type SimPolicyName = typeof SIM_POLICY_NAMES[number];

/** Whether `name` is a sim-only policy. */
export function isSimPolicyName(name: string): name is SimPolicyName {
  return (SIM_POLICY_NAMES as readonly string[]).includes(name);
}

/** Creates the sim-only policy `name` over `servers`, with `rng` for its coin flips. */
export function createSimPicker(
  name: SimPolicyName,
  servers: SimServers,
  rng: () => number,
): SimPicker {
  switch (name) {
    case "oracle":
      return { pick: (_client, nowMs) => oraclePick(servers, nowMs) };
    case "jsq":
      return { pick: () => shortestQueuePick(servers, rng) };
    case "random":
      return { pick: () => Math.floor(rng() * servers.count) };
  }
}

/**
 * The server where a new request is expected to complete first: the time until a slot is free
 * for it (the in-service requests' remaining work and the queued requests' work, both known
 * exactly), plus its own mean service time, all at the server's capacity.
 * Exact with one slot per server; with several, the wait is the work ahead shared evenly over
 * the slots, an approximation of FIFO over `c` slots.
 */
export function oraclePick(servers: SimServers, nowMs: number): number {
  const { count, slots, capacity, busy, queuedWorkMs, slotEndMs, meanServiceMs } = servers;
  let best = 0;
  let bestMs = Infinity;
  for (let i = 0; i < count; i++) {
    const own = meanServiceMs / capacity[i];
    let waitMs = 0;
    if (busy[i] === slots) {
      let remaining = 0;
      let soonest = Infinity;
      for (let s = i * slots; s < (i + 1) * slots; s++) {
        const left = slotEndMs[s] - nowMs;
        remaining += left;
        if (left < soonest) soonest = left;
      }
      waitMs = slots === 1
        ? remaining + queuedWorkMs[i] / capacity[i]
        : Math.max(soonest, (remaining + queuedWorkMs[i] / capacity[i]) / slots);
    }
    const total = waitMs + own;
    if (total < bestMs) {
      bestMs = total;
      best = i;
    }
  }
  return best;
}

/** The server with the fewest requests (in service and waiting), ties broken at random. */
export function shortestQueuePick(servers: SimServers, rng: () => number): number {
  const { count, busy, queued } = servers;
  let best = 0;
  let bestCount = Infinity;
  let ties = 0;
  for (let i = 0; i < count; i++) {
    const n = busy[i] + queued[i];
    if (n < bestCount) {
      bestCount = n;
      best = i;
      ties = 1;
    } else if (n === bestCount && rng() * ++ties < 1) {
      best = i; // reservoir sampling: each of the tied servers with equal chance
    }
  }
  return best;
}
