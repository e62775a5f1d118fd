/**
 * What the load-aware policies (`least_load`, `power_of_two`) believe about each server between
 * two of its reports. Private to `policies/`.
 *
 * @module
 */
import { slowStartFactor, type SlowStartOptions } from "./slow_start.ts";
import type { PrepareContext, Snapshot } from "./types.ts";

/** Per-server counters and estimates, aligned with `snapshot.servers`. */
export interface LoadEstimate {
  /** Picks sent to each server since its report `seqs[i]`. */
  readonly picks: Float64Array;
  /** The report sequence `picks[i]` counts from (-1: no report yet). */
  readonly seqs: Float64Array;
  /** Whether the server's report was fresh when the estimate was made (1) or not (0). */
  readonly fresh: Uint8Array;
  /** CPU load in percent (for fresh reports; the fresh mean for the others). */
  readonly cpu: Float64Array;
  /** Outstanding tasks when the estimate was made. */
  readonly outstanding: Float64Array;
  /** Slow start factor, 0 to 1 (1 for an established server). */
  readonly factor: Float64Array;
  /** Tasks one own pick stands for: the number of balancer replicas (at least 1). */
  readonly replicas: number;
}

/**
 * Builds the estimate for `snapshot`, carrying pick counts over from the previous one. A report
 * is stale the moment it is sent, so a server's outstanding tasks are estimated as
 *
 *     reported in-flight + replicas × picks since that report - qps × time since that report
 *
 * (never below zero): every pick adds a task, and the server's completion rate takes them away.
 * Each pick counts `replicas` times because every balancer sees only its own picks; counting
 * only those would make all of them herd onto the server that looked least loaded in the last
 * report. A report older than `staleAfterMs`, or none yet, counts as the average fresh server
 * plus its own picks, so the server is neither flooded nor starved.
 */
export function estimateLoad<S extends { estimate: LoadEstimate }>(
  snapshot: Snapshot,
  context: PrepareContext<S> | undefined,
  staleAfterMs: number,
  slowStart: Required<SlowStartOptions>,
): LoadEstimate {
  const n = snapshot.servers.length;
  const nowMs = context?.nowMs ?? 0;
  const estimate: LoadEstimate = {
    picks: new Float64Array(n),
    seqs: new Float64Array(n),
    fresh: new Uint8Array(n),
    cpu: new Float64Array(n),
    outstanding: new Float64Array(n),
    factor: new Float64Array(n),
    replicas: Math.max(1, context?.replicas ?? 1),
  };
  const replicas = estimate.replicas;
  const previous = context?.previous?.estimate;
  const before = indexById(context?.previousSnapshot, previous);
  let freshCpu = 0;
  let freshOutstanding = 0;
  let freshCount = 0;
  for (let i = 0; i < n; i++) {
    const server = snapshot.servers[i];
    const load = server.load;
    const seq = load?.seq ?? -1;
    estimate.seqs[i] = seq;
    const j = before?.get(server.id);
    if (previous && j !== undefined && previous.seqs[j] === seq) {
      estimate.picks[i] = previous.picks[j];
    }
    estimate.factor[i] = slowStartFactor(server.addedAtMs, nowMs, slowStart);
    if (load !== undefined && nowMs - load.reportedAtMs <= staleAfterMs) {
      const ageS = Math.max(0, nowMs - load.reportedAtMs) / 1_000;
      estimate.fresh[i] = 1;
      estimate.cpu[i] = load.cpuLoad;
      estimate.outstanding[i] = Math.max(
        0,
        load.inFlight + replicas * estimate.picks[i] - load.qps * ageS,
      );
      freshCpu += load.cpuLoad;
      freshOutstanding += estimate.outstanding[i];
      freshCount++;
    }
  }
  const meanCpu = freshCount ? freshCpu / freshCount : 0;
  const meanOutstanding = freshCount ? freshOutstanding / freshCount : 0;
  for (let i = 0; i < n; i++) {
    if (estimate.fresh[i]) continue;
    estimate.cpu[i] = meanCpu;
    estimate.outstanding[i] = meanOutstanding + replicas * estimate.picks[i];
  }
  return estimate;
}

function indexById(
  snapshot: Snapshot | undefined,
  previous: LoadEstimate | undefined,
): Map<number, number> | undefined {
  if (!snapshot || !previous || previous.seqs.length !== snapshot.servers.length) return undefined;
  const map = new Map<number, number>();
  snapshot.servers.forEach((server, i) => map.set(server.id, i));
  return map;
}
