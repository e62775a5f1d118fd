/**
 * `weighted_round_robin`: gRPC's weighted round robin (gRFC A58) over the load reports. A
 * server's weight is the work it gets done per unit of CPU,
 *
 *     qps / (cpuLoad / 100 + (eps / qps) * errorUtilizationPenalty)
 *
 * so a server that answers more for the same CPU gets more, and one that fails fast does not look
 * cheap. A weight is trusted only after a blackout (a new server's first figures are noise) and
 * until it expires, the others getting the mean; an EDF scheduler (`edf_scheduler.ts`), rebuilt
 * in `prepare` only, turns the weights into picks.
 *
 * @module
 */
import { createEdfScheduler, type EdfScheduler, nextIndex } from "./edf_scheduler.ts";
import { checkSlowStart, slowStartFactor, type SlowStartOptions } from "./slow_start.ts";
import { NO_SERVERS, type Policy, type ServerView, type Snapshot } from "./types.ts";

/** How long a server's reports must have been usable before its weight is trusted. */
export const DEFAULT_BLACKOUT_PERIOD_MS = 10_000;
/** Age of the last report after which a weight is no longer trusted. */
export const DEFAULT_WEIGHT_EXPIRATION_MS = 180_000;
/** How often weights are recomputed when no new snapshot arrives. */
export const DEFAULT_WEIGHT_UPDATE_PERIOD_MS = 1_000;
/** Shortest weight update period accepted (A58's floor): each update is O(n) work. */
export const MIN_WEIGHT_UPDATE_PERIOD_MS = 100;
/** How much an error costs, in utilization, relative to a success. */
export const DEFAULT_ERROR_UTILIZATION_PENALTY = 1;
/**
 * Smallest weight relative to the largest: a server reporting absurd figures still gets a
 * finite period in the scheduler, so `prepare` never throws on what a backend sent.
 */
const MIN_WEIGHT_RATIO = 1e-6;

/** Options of {@linkcode weightedRoundRobin}. */
export interface WeightedRoundRobinOptions extends SlowStartOptions {
  /**
   * How long a server's reports must have been usable before its weight is used; until then it
   * gets the mean weight.
   * @default {DEFAULT_BLACKOUT_PERIOD_MS}
   */
  blackoutPeriodMs?: number;
  /**
   * Age of the last report after which the weight is not used (and the blackout starts over).
   * @default {DEFAULT_WEIGHT_EXPIRATION_MS}
   */
  weightExpirationMs?: number;
  /**
   * How often weights are recomputed without a new snapshot (the policy's `refreshMs`); at
   * least {@linkcode MIN_WEIGHT_UPDATE_PERIOD_MS}.
   * @default {DEFAULT_WEIGHT_UPDATE_PERIOD_MS}
   */
  weightUpdatePeriodMs?: number;
  /**
   * Utilization charged per error relative to per success: `eps / qps` times this is added to
   * the utilization.
   * @default {DEFAULT_ERROR_UTILIZATION_PENALTY}
   */
  errorUtilizationPenalty?: number;
}

/** State of {@linkcode weightedRoundRobin}, built in `prepare`. */
export interface WeightedRoundRobinState {
  /** Names the next server; the only thing `pick` changes. */
  readonly scheduler: EdfScheduler;
  /**
   * `usableSinceMs[i]`: when the current streak of usable reports of `snapshot.servers[i]` was
   * first seen; `NaN` when its report is not usable.
   */
  readonly usableSinceMs: Float64Array;
  /**
   * `reported[i]`: the last usable weight of `snapshot.servers[i]` (0: none). As in A58, a report
   * without traffic (qps or utilization 0) keeps the previous weight until it expires.
   */
  readonly reported: Float64Array;
  /** `reportedAtMs[i]`: when the report behind `reported[i]` was made. */
  readonly reportedAtMs: Float64Array;
  /** `weights[i]`: the weight the scheduler was built with, normalised to a mean of 1. */
  readonly weights: Float64Array;
}

type Checked = Required<WeightedRoundRobinOptions>;

/** Creates the weighted round robin policy. */
export function weightedRoundRobin(
  options: WeightedRoundRobinOptions = {},
): Policy<WeightedRoundRobinState> {
  const checked: Checked = {
    blackoutPeriodMs: checkOption(
      "blackoutPeriodMs",
      options.blackoutPeriodMs ?? DEFAULT_BLACKOUT_PERIOD_MS,
      0,
    ),
    weightExpirationMs: checkOption(
      "weightExpirationMs",
      options.weightExpirationMs ?? DEFAULT_WEIGHT_EXPIRATION_MS,
      0,
    ),
    weightUpdatePeriodMs: checkOption(
      "weightUpdatePeriodMs",
      options.weightUpdatePeriodMs ?? DEFAULT_WEIGHT_UPDATE_PERIOD_MS,
      MIN_WEIGHT_UPDATE_PERIOD_MS,
    ),
    errorUtilizationPenalty: checkOption(
      "errorUtilizationPenalty",
      options.errorUtilizationPenalty ?? DEFAULT_ERROR_UTILIZATION_PENALTY,
      0,
    ),
    ...checkSlowStart("weighted_round_robin", options),
  };
  return {
    name: "weighted_round_robin",
    refreshMs: checked.weightUpdatePeriodMs,
    prepare(snapshot, context) {
      const nowMs = context?.nowMs ?? 0;
      const previous = context?.previous;
      const previousSnapshot = context?.previousSnapshot;
      const streaks = trackStreaks(snapshot, nowMs, checked, previous, previousSnapshot);
      const weights = effectiveWeights(snapshot, streaks, nowMs, checked);
      // Unchanged weights keep the scheduler, so a timer refresh does not restart the rotation.
      const keep = previous !== undefined && previousSnapshot !== undefined &&
        sameIds(previousSnapshot.servers, snapshot.servers) &&
        sameValues(previous.weights, weights);
      // Without an rng there is no random start: the conformance suite wants the same picks
      // from the same inputs, and the picker always passes one.
      const scheduler = keep
        ? previous.scheduler
        : createEdfScheduler(weights, context?.rng ?? noOffset);
      return { scheduler, ...streaks, weights };
    },
    pick(snapshot, state) {
      if (snapshot.servers.length === 0) return NO_SERVERS;
      return snapshot.picks[nextIndex(state.scheduler)];
    },
    weights(snapshot, state, nowMs) {
      return Array.from(effectiveWeights(snapshot, state, nowMs, checked));
    },
  };
}

/** Checks one numeric option; the message names it in the standard library's form. */
function checkOption(name: string, value: number, min: number): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new RangeError(
      `Cannot create weighted_round_robin as '${name}' must be a finite number: current value is ${
        typeof value === "string" ? `'${value}'` : String(value)
      }`,
    );
  }
  if (value < min) {
    throw new RangeError(
      `Cannot create weighted_round_robin as '${name}' must be >= ${min}: current value is ${value}`,
    );
  }
  return value;
}

/** The weight a server's latest report gives, or 0 when there is no usable report at `nowMs`. */
function reportedWeight(server: ServerView, nowMs: number, options: Checked): number {
  const load = server.load;
  if (load === undefined) return 0;
  const qps = load.qps;
  const utilization = load.cpuLoad / 100;
  if (!(qps > 0) || !(utilization > 0)) return 0;
  if (!(nowMs - load.reportedAtMs < options.weightExpirationMs)) return 0;
  const weight = qps / (utilization + (load.eps / qps) * options.errorUtilizationPenalty);
  return weight > 0 && Number.isFinite(weight) ? weight : 0;
}

type Streaks = Pick<WeightedRoundRobinState, "usableSinceMs" | "reported" | "reportedAtMs">;

/**
 * Slow path: each server's last usable weight and when its current streak of usable weights
 * began, carried over by id from the previous state. A report without traffic keeps the
 * previous weight until `weightExpirationMs` after the report that gave it (A58); an expired or
 * absent weight gives `NaN`, so the blackout starts over with the next usable report. When a
 * server is new to the policy's state, its streak counts from when the server became known
 * (`addedAtMs`): a server that joins now starts its blackout now, while one that has reported
 * for long (after `SetPolicy`, or in a watching client, whose `addedAtMs` is the balancer's) is
 * trusted at once.
 */
function trackStreaks(
  snapshot: Snapshot,
  nowMs: number,
  options: Checked,
  previous: WeightedRoundRobinState | undefined,
  previousSnapshot: Snapshot | undefined,
): Streaks {
  const servers = snapshot.servers;
  const n = servers.length;
  const streaks: Streaks = {
    usableSinceMs: new Float64Array(n).fill(NaN),
    reported: new Float64Array(n),
    reportedAtMs: new Float64Array(n),
  };
  const carry = previous !== undefined && previousSnapshot !== undefined &&
    previous.usableSinceMs.length === previousSnapshot.servers.length;
  const before = carry ? previousSnapshot.servers : [];
  let j = 0;
  for (let i = 0; i < n; i++) {
    const server = servers[i];
    // Both lists are in ascending id order: one merge pass finds the server's previous entry.
    while (j < before.length && before[j].id < server.id) j++;
    const k = j < before.length && before[j].id === server.id ? j : -1;
    const fresh = reportedWeight(server, nowMs, options);
    if (fresh > 0) {
      streaks.reported[i] = fresh;
      streaks.reportedAtMs[i] = server.load!.reportedAtMs;
    } else if (k >= 0 && nowMs - previous!.reportedAtMs[k] < options.weightExpirationMs) {
      streaks.reported[i] = previous!.reported[k];
      streaks.reportedAtMs[i] = previous!.reportedAtMs[k];
    }
    if (streaks.reported[i] === 0) continue;
    const carried = k >= 0 ? previous!.usableSinceMs[k] : NaN;
    streaks.usableSinceMs[i] = !Number.isNaN(carried) ? carried : k >= 0
      ? nowMs // its weights stopped and came back: a new streak
      : Math.min(nowMs, server.addedAtMs); // new to this policy: count from when it joined
  }
  return streaks;
}

/**
 * Slow path: each server's weight at `nowMs`, normalised to a mean of 1. Trusted weights (usable
 * and out of blackout) are used as reported; the others get the mean of the trusted ones, or
 * all weights are equal when fewer than two are trusted; then slow start scales each.
 */
function effectiveWeights(
  snapshot: Snapshot,
  streaks: Streaks,
  nowMs: number,
  options: Checked,
): Float64Array {
  const { usableSinceMs, reported } = streaks;
  const servers = snapshot.servers;
  const n = servers.length;
  const weights = new Float64Array(n);
  let trusted = 0;
  let largest = 0;
  for (let i = 0; i < n; i++) {
    // NaN (no streak) compares false: not trusted.
    if (!(nowMs - usableSinceMs[i] >= options.blackoutPeriodMs)) continue;
    const weight = reported[i];
    if (weight === 0) continue;
    weights[i] = weight;
    trusted++;
    if (weight > largest) largest = weight;
  }
  if (trusted < 2) {
    weights.fill(1);
  } else {
    // Scaled by the largest first, so the sum cannot overflow.
    let sum = 0;
    for (let i = 0; i < n; i++) {
      weights[i] /= largest;
      sum += weights[i];
    }
    const mean = sum / trusted;
    for (let i = 0; i < n; i++) if (weights[i] === 0) weights[i] = mean;
  }
  let max = 0;
  for (let i = 0; i < n; i++) {
    weights[i] *= slowStartFactor(servers[i].addedAtMs, nowMs, options);
    if (weights[i] > max) max = weights[i];
  }
  let sum = 0;
  for (let i = 0; i < n; i++) {
    weights[i] = Math.max(weights[i] / max, MIN_WEIGHT_RATIO);
    sum += weights[i];
  }
  const mean = sum / n;
  for (let i = 0; i < n; i++) weights[i] /= mean;
  return weights;
}

/** Whether two server lists name the same ids in the same order. */
function sameIds(a: readonly ServerView[], b: readonly ServerView[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i].id !== b[i].id) return false;
  return true;
}

/** Whether two arrays hold the same values. */
function sameValues(a: Float64Array, b: Float64Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function noOffset(): number {
  return 0;
}
