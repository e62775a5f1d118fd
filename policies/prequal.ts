/**
 * `prequal`: Prequal's probing balancer (Wydrowski, Kleinberg, Rumble, Archer, "Load is not what
 * you should balance", NSDI 2024). It balances what a request will meet, not CPU: servers answer
 * probes with their requests in flight (RIF) and the latency a request arriving now should expect
 * (`lib/backend/rif_latency.ts`), and picks come from a small pool of recent answers:
 *
 * - each pick asks for `probesPerPick` probes of servers drawn at random (the holder sends them
 *   and hands the answers back with {@linkcode recordProbe}), so probing follows the pick rate;
 * - the pool keeps at most `poolSize` answers, one per server, each used at most `reuse` times
 *   and never once older than `maxAgeMs`; every pick also drops the pool's worst answer at the
 *   rate `removeWorstPerPick`, so the answers left are not just the servers nobody wanted;
 * - the hot-cold rule: an answer is hot when its RIF is above the `hotQuantile` quantile of the
 *   RIFs recently probed; among the cold ones the lowest latency wins, and if all are hot, the
 *   lowest RIF. A used answer's RIF counts the request just sent, so reuse does not herd.
 *
 * With no usable answer (the first picks, or probes failing) it falls back to round robin.
 * Servers that cannot answer probes (original backends: UNIMPLEMENTED) get their share by count,
 * in turn, and are not probed. How this differs from the paper, and why, is in
 * `docs/prequal.md`. Pick is O(poolSize), whatever the number of servers.
 *
 * @module
 */
import { indexAfterId, indexOfId, NO_SERVERS, type Policy, type Snapshot } from "./types.ts";

/** Probes asked for per pick by default (docs/prequal.md: why 2 with few servers). */
export const DEFAULT_PROBES_PER_PICK = 2;
/** Answers the pool holds by default (the paper's 16). */
export const DEFAULT_POOL_SIZE = 16;
/** Age after which an answer is no longer used, by default (ms). */
export const DEFAULT_PROBE_MAX_AGE_MS = 1_000;
/** RIF quantile above which an answer is hot, by default. */
export const DEFAULT_HOT_QUANTILE = 0.95;
/** Worst answers dropped per pick by default. */
export const DEFAULT_REMOVE_WORST_PER_PICK = 0.25;
/** Probe answers whose RIFs set the hot threshold (the latest ones). */
const RIF_HISTORY = 64;
/** Requests for probes waiting for the holder, at most; more are dropped (and counted). */
const WANTED_CAPACITY = 256;
/** Pick intervals a slow holder keeps answers for (see `pick`). */
const SLOW_HOLDER_PICKS = 4;
/** Weight of the latest interval in the average time between picks. */
const GAP_WEIGHT = 0.1;
/** Slack of the reuse budget over what keeps the pool full (see {@linkcode prequal}). */
const REUSE_SLACK = 0.25;
/** Picks an answer serves at least by default: each use adds to its RIF, so reuse is safe. */
export const DEFAULT_MIN_REUSE = 3;

/** Options of {@linkcode prequal}. */
export interface PrequalOptions {
  /** Probes asked for per pick (> 0). @default {DEFAULT_PROBES_PER_PICK} */
  probesPerPick?: number;
  /** Answers the pool holds (1 to 1024). @default {DEFAULT_POOL_SIZE} */
  poolSize?: number;
  /** Age after which an answer is dropped (ms, > 0). @default {DEFAULT_PROBE_MAX_AGE_MS} */
  maxAgeMs?: number;
  /** RIF quantile above which an answer is hot (0 to 1). @default {DEFAULT_HOT_QUANTILE} */
  hotQuantile?: number;
  /** Worst answers dropped per pick (>= 0). @default {DEFAULT_REMOVE_WORST_PER_PICK} */
  removeWorstPerPick?: number;
  /**
   * Picks an answer may serve (>= 1).
   * @default {the larger of DEFAULT_MIN_REUSE and what keeps the pool full (see the code)}
   */
  reuse?: number;
}

/** State of {@linkcode prequal}: the probe pool and the probes asked for. */
export interface PrequalState {
  /** Answers in the pool (entries `0..count-1` of the arrays below). */
  count: number;
  /** Server id of each answer. */
  readonly id: Float64Array;
  /** Index of each answer's server in the snapshot. */
  readonly index: Int32Array;
  /** RIF of each answer, plus the picks it has served. */
  readonly rif: Float64Array;
  /** Latency estimate of each answer (ms). */
  readonly latencyMs: Float64Array;
  /** When each answer arrived (ms). */
  readonly atMs: Float64Array;
  /** Picks each answer has served. */
  readonly uses: Float64Array;
  /** Picks an answer may serve. */
  readonly reuse: number;
  /** Balancers picking from the same servers: each own pick counts this many requests. */
  replicas: number;
  /** RIF quantile above which an answer is hot. */
  readonly hotQuantile: number;
  /** The latest answers' RIFs (a ring), and the hot threshold they set. */
  readonly rifHistory: Float64Array;
  /** Room to sort the history in. */
  readonly rifSorted: Float64Array;
  rifHistoryCount: number;
  rifHistoryNext: number;
  hotRif: number;
  /** Server ids to probe, a ring the holder drains with {@linkcode takeProbeRequest}. */
  readonly wanted: Float64Array;
  wantedHead: number;
  wantedSize: number;
  /** Probe requests dropped because the holder did not drain them. */
  wantedDropped: number;
  probeCredit: number;
  removeCredit: number;
  /** `silent[i]`: `snapshot.servers[i]` cannot answer probes; `silentCount` of them. */
  readonly silent: Uint8Array;
  silentCount: number;
  /** Ids of the last servers named by the round robin fallbacks. */
  lastFallbackId: number;
  lastSilentId: number;
  /** When the last pick was made, and the average time between picks (ms). */
  lastPickMs: number;
  pickGapMs: number;
  /** Picks made from the pool and by a fallback, for the dashboard and tests. */
  pooledPicks: number;
  fallbackPicks: number;
}

/** Creates the prequal policy; throws a `RangeError` naming an option out of range. */
export function prequal(options: PrequalOptions = {}): Policy<PrequalState> {
  const probesPerPick = options.probesPerPick ?? DEFAULT_PROBES_PER_PICK;
  const poolSize = options.poolSize ?? DEFAULT_POOL_SIZE;
  const maxAgeMs = options.maxAgeMs ?? DEFAULT_PROBE_MAX_AGE_MS;
  const hotQuantile = options.hotQuantile ?? DEFAULT_HOT_QUANTILE;
  const removeWorst = options.removeWorstPerPick ?? DEFAULT_REMOVE_WORST_PER_PICK;
  check("probesPerPick", probesPerPick, probesPerPick > 0 && probesPerPick <= 16, "> 0, <= 16");
  check(
    "poolSize",
    poolSize,
    Number.isInteger(poolSize) && poolSize >= 1 && poolSize <= 1024,
    "an integer 1 to 1024",
  );
  check("maxAgeMs", maxAgeMs, maxAgeMs > 0, "> 0");
  check("hotQuantile", hotQuantile, hotQuantile >= 0 && hotQuantile <= 1, "0 to 1");
  check("removeWorstPerPick", removeWorst, removeWorst >= 0 && removeWorst <= 1, "0 to 1");
  // Each pick uses one answer and drops `removeWorst` more; `probesPerPick` arrive. An answer
  // serving `reuse` picks keeps the pool full when probesPerPick × reuse covers both.
  const reuse = options.reuse ??
    Math.max(DEFAULT_MIN_REUSE, (1 + removeWorst) * (1 + REUSE_SLACK) / probesPerPick);
  check("reuse", reuse, reuse >= 1, ">= 1");
  return {
    name: "prequal",
    prepare(snapshot, context) {
      const previous = context?.previous;
      if (previous && context?.previousSnapshot === snapshot) {
        previous.replicas = Math.max(1, context?.replicas ?? 1);
        return previous;
      }
      const state = carryOver(
        snapshot,
        previous,
        context?.previousSnapshot,
        poolSize,
        reuse,
        hotQuantile,
      );
      state.replicas = Math.max(1, context?.replicas ?? 1);
      return state;
    },
    pick(snapshot, state, context) {
      const servers = snapshot.servers;
      const n = servers.length;
      if (n === 0) return NO_SERVERS;
      const rng = context.rng;
      const now = context.nowMs;
      // Ask for probes at the pick rate; an empty pool asks for a few more to refill.
      state.probeCredit += state.count === 0 ? probesPerPick + 2 : probesPerPick;
      let previousDraw = -1;
      while (state.probeCredit >= 1) {
        state.probeCredit -= 1;
        previousDraw = wantProbe(snapshot, state, rng, previousDraw);
      }
      // Servers that cannot be probed get their share by count, in turn.
      if (state.silentCount > 0 && rng() * n < state.silentCount) {
        return snapshot.picks[nextInTurn(snapshot, state, true)];
      }
      // A holder that picks seldom (a watch client of many) keeps answers for a few of its
      // pick intervals: its pool would otherwise never hold more than the last pick's probes.
      const gap = now - state.lastPickMs;
      state.lastPickMs = now;
      if (gap >= 0 && gap < 60_000) state.pickGapMs += (gap - state.pickGapMs) * GAP_WEIGHT;
      const oldestMs = now - Math.max(maxAgeMs, SLOW_HOLDER_PICKS * state.pickGapMs);
      for (let k = state.count - 1; k >= 0; k--) {
        if (state.atMs[k] < oldestMs) removeAt(state, k);
      }
      if (state.count === 0) {
        state.fallbackPicks++;
        return snapshot.picks[nextInTurn(snapshot, state, false)];
      }
      const chosen = hotCold(state);
      const index = state.index[chosen];
      // The request just sent, and as many from each other balancer assumed to pick at this
      // one's rate, queue behind the others: the server's latency grows with them.
      const added = state.replicas;
      state.latencyMs[chosen] *= (state.rif[chosen] + 1 + added) / (state.rif[chosen] + 1);
      state.rif[chosen] += added;
      state.uses[chosen] += 1;
      if (state.uses[chosen] >= state.reuse) removeAt(state, chosen);
      state.removeCredit += removeWorst;
      if (state.removeCredit >= 1) {
        state.removeCredit -= 1;
        if (state.count > 1) removeAt(state, worst(state));
      }
      state.pooledPicks++;
      return snapshot.picks[index];
    },
    probing: { take: takeProbeRequest, answered: recordProbe, failed: recordProbeFailure },
  };
}

/**
 * The next server id the policy wants probed, taken off its queue; -1 when none is waiting. The
 * holder sends the probe and hands the answer to {@linkcode recordProbe} (or the failure to
 * {@linkcode recordProbeFailure}).
 */
export function takeProbeRequest(state: PrequalState): number {
  if (state.wantedSize === 0) return -1;
  const id = state.wanted[state.wantedHead];
  state.wantedHead = (state.wantedHead + 1) % WANTED_CAPACITY;
  state.wantedSize--;
  return id;
}

/**
 * Server `id` answered a probe at `nowMs`: `rif` requests in flight, a request arriving now should
 * take `latencyMs`. Its earlier answer is replaced; a full pool drops its oldest. An answer from a
 * server no longer in `snapshot` is ignored.
 */
export function recordProbe(
  snapshot: Snapshot,
  state: PrequalState,
  id: number,
  rif: number,
  latencyMs: number,
  nowMs: number,
): void {
  const index = indexOfId(snapshot.servers, id);
  if (index < 0 || !(rif >= 0)) return;
  if (state.silent[index] === 1) {
    state.silent[index] = 0;
    state.silentCount--;
  }
  noteRif(state, rif);
  let k = slotOf(state, id);
  if (k < 0) {
    if (state.count === state.id.length) removeAt(state, oldest(state));
    k = state.count++;
  }
  state.id[k] = id;
  state.index[k] = index;
  state.rif[k] = rif;
  // A server with no latency yet (nothing ended) is ranked on RIF alone among the cold ones.
  state.latencyMs[k] = latencyMs >= 0 ? latencyMs : 0;
  state.atMs[k] = nowMs;
  state.uses[k] = 0;
}

/**
 * A probe of server `id` failed: its answer leaves the pool, so it is not picked on stale good
 * news. With `silent` (it cannot answer probes at all, as an original backend), it is picked
 * by count instead, in turn, and not asked for again until it answers.
 */
export function recordProbeFailure(
  snapshot: Snapshot,
  state: PrequalState,
  id: number,
  silent: boolean,
): void {
  const k = slotOf(state, id);
  if (k >= 0) removeAt(state, k);
  const index = indexOfId(snapshot.servers, id);
  if (silent && index >= 0 && state.silent[index] === 0) {
    state.silent[index] = 1;
    state.silentCount++;
  }
}

function check(name: string, value: number, ok: boolean, accepted: string): void {
  if (!ok) {
    throw new RangeError(
      `Cannot create prequal as '${name}' must be ${accepted}: current value is ${value}`,
    );
  }
}

/** A new state for `snapshot`, with the pool's answers and the silent marks carried by id. */
function carryOver(
  snapshot: Snapshot,
  previous: PrequalState | undefined,
  previousSnapshot: Snapshot | undefined,
  poolSize: number,
  reuse: number,
  hotQuantile: number,
): PrequalState {
  const n = snapshot.servers.length;
  const state: PrequalState = {
    count: 0,
    id: new Float64Array(poolSize),
    index: new Int32Array(poolSize),
    rif: new Float64Array(poolSize),
    latencyMs: new Float64Array(poolSize),
    atMs: new Float64Array(poolSize),
    uses: new Float64Array(poolSize),
    reuse,
    replicas: 1,
    hotQuantile,
    rifHistory: new Float64Array(RIF_HISTORY),
    rifSorted: new Float64Array(RIF_HISTORY),
    rifHistoryCount: 0,
    rifHistoryNext: 0,
    hotRif: Infinity,
    wanted: new Float64Array(WANTED_CAPACITY),
    wantedHead: 0,
    wantedSize: 0,
    wantedDropped: 0,
    probeCredit: 0,
    removeCredit: 0,
    silent: new Uint8Array(n),
    silentCount: 0,
    lastFallbackId: -1,
    lastSilentId: -1,
    lastPickMs: -Infinity,
    pickGapMs: 0,
    pooledPicks: 0,
    fallbackPicks: 0,
  };
  if (!previous) return state;
  for (let k = 0; k < previous.count; k++) {
    const index = indexOfId(snapshot.servers, previous.id[k]);
    if (index < 0) continue;
    const j = state.count++;
    state.id[j] = previous.id[k];
    state.index[j] = index;
    state.rif[j] = previous.rif[k];
    state.latencyMs[j] = previous.latencyMs[k];
    state.atMs[j] = previous.atMs[k];
    state.uses[j] = previous.uses[k];
  }
  state.rifHistory.set(previous.rifHistory);
  state.rifHistoryCount = previous.rifHistoryCount;
  state.rifHistoryNext = previous.rifHistoryNext;
  state.hotRif = previous.hotRif;
  // Probes asked for but not sent yet are still wanted; they are ids, valid in any snapshot.
  for (let k = 0; k < previous.wantedSize; k++) {
    state.wanted[k] = previous.wanted[(previous.wantedHead + k) % WANTED_CAPACITY];
  }
  state.wantedSize = previous.wantedSize;
  state.wantedDropped = previous.wantedDropped;
  state.probeCredit = previous.probeCredit;
  state.removeCredit = previous.removeCredit;
  state.lastFallbackId = previous.lastFallbackId;
  state.lastSilentId = previous.lastSilentId;
  state.lastPickMs = previous.lastPickMs;
  state.pickGapMs = previous.pickGapMs;
  state.pooledPicks = previous.pooledPicks;
  state.fallbackPicks = previous.fallbackPicks;
  if (previousSnapshot) {
    previousSnapshot.servers.forEach((server, i) => {
      if (previous.silent[i] !== 1) return;
      const index = indexOfId(snapshot.servers, server.id);
      if (index >= 0) {
        state.silent[index] = 1;
        state.silentCount++;
      }
    });
  }
  return state;
}

/** Pool slot of server `id`'s answer, or -1. */
function slotOf(state: PrequalState, id: number): number {
  for (let k = 0; k < state.count; k++) if (state.id[k] === id) return k;
  return -1;
}

/** Queues a probe of a random server that can answer, not `avoid` if another exists; returns it. */
function wantProbe(snapshot: Snapshot, state: PrequalState, rng: () => number, avoid: number) {
  const n = snapshot.servers.length;
  if (state.silentCount === n) return avoid;
  let index = Math.floor(rng() * n);
  // A few redraws find a server that answers and differs from the last draw, if one exists.
  for (let tries = 0; tries < 4 && (state.silent[index] === 1 || index === avoid); tries++) {
    index = Math.floor(rng() * n);
  }
  if (state.silent[index] === 1) return avoid;
  if (state.wantedSize === WANTED_CAPACITY) {
    state.wantedDropped++;
    return index;
  }
  state.wanted[(state.wantedHead + state.wantedSize) % WANTED_CAPACITY] =
    snapshot.servers[index].id;
  state.wantedSize++;
  return index;
}

/** The next server in id order that is silent (`silent`) or not, wrapping; round robin's rule. */
function nextInTurn(snapshot: Snapshot, state: PrequalState, silent: boolean): number {
  const servers = snapshot.servers;
  const n = servers.length;
  let index = indexAfterId(servers, silent ? state.lastSilentId : state.lastFallbackId);
  for (let step = 0; step < n; step++, index++) {
    if (index >= n) index = 0;
    if ((state.silent[index] === 1) === silent) break;
  }
  if (index >= n) index = 0;
  if (silent) state.lastSilentId = servers[index].id;
  else state.lastFallbackId = servers[index].id;
  return index;
}

/** The hot-cold rule: the cold answer of lowest latency, or if all are hot, the lowest RIF. */
function hotCold(state: PrequalState): number {
  let cold = -1;
  let coolest = 0;
  for (let k = 0; k < state.count; k++) {
    const rif = state.rif[k];
    if (rif <= state.hotRif) {
      const latency = state.latencyMs[k];
      const better = cold < 0 || latency < state.latencyMs[cold] ||
        (latency === state.latencyMs[cold] && rif < state.rif[cold]);
      if (better) cold = k;
    }
    if (rif < state.rif[coolest]) coolest = k;
  }
  return cold >= 0 ? cold : coolest;
}

/** The answer to drop first: the hottest if any is hot, else the slowest. */
function worst(state: PrequalState): number {
  let hottest = 0;
  let slowest = 0;
  for (let k = 1; k < state.count; k++) {
    if (state.rif[k] > state.rif[hottest]) hottest = k;
    if (state.latencyMs[k] > state.latencyMs[slowest]) slowest = k;
  }
  return state.rif[hottest] > state.hotRif ? hottest : slowest;
}

function oldest(state: PrequalState): number {
  let k0 = 0;
  for (let k = 1; k < state.count; k++) if (state.atMs[k] < state.atMs[k0]) k0 = k;
  return k0;
}

/** Removes pool entry `k`, moving the last one into its place. */
function removeAt(state: PrequalState, k: number): void {
  const last = --state.count;
  if (k === last) return;
  state.id[k] = state.id[last];
  state.index[k] = state.index[last];
  state.rif[k] = state.rif[last];
  state.latencyMs[k] = state.latencyMs[last];
  state.atMs[k] = state.atMs[last];
  state.uses[k] = state.uses[last];
}

/** Adds a probed RIF to the history and sets the hot threshold to its `hotQuantile` quantile. */
function noteRif(state: PrequalState, rif: number): void {
  state.rifHistory[state.rifHistoryNext] = rif;
  state.rifHistoryNext = (state.rifHistoryNext + 1) % RIF_HISTORY;
  if (state.rifHistoryCount < RIF_HISTORY) state.rifHistoryCount++;
  const n = state.rifHistoryCount;
  const sorted = state.rifSorted;
  for (let i = 0; i < n; i++) {
    const v = state.rifHistory[i];
    let j = i - 1;
    while (j >= 0 && sorted[j] > v) {
      sorted[j + 1] = sorted[j];
      j--;
    }
    sorted[j + 1] = v;
  }
  state.hotRif = sorted[Math.floor(state.hotQuantile * (n - 1))];
}
