/**
 * The types every policy shares: the immutable snapshot it reads, the context of one pick, and the
 * result it returns. A policy is two functions: `prepare` (slow path, on each new snapshot and
 * every `refreshMs`) builds its state, carrying over from the previous one; `pick` (hot path) is
 * synchronous, does no I/O or logging, never throws and allocates nothing, returning a result from
 * `snapshot.picks` and changing only its own state's cursor or counters. Clock and randomness come
 * in through {@linkcode PickContext}, so a policy is deterministic given its inputs.
 *
 * @module
 */

/** The latest load report of a server. */
export interface LoadView {
  /** CPU use in percent of the backend's machine, 0 to 100. */
  readonly cpuLoad: number;
  /** Tasks running or queued on the backend when it reported (0 from original backends). */
  readonly inFlight: number;
  /** Clock reading (ms) of the balancer when the report arrived. */
  readonly reportedAtMs: number;
  /** Counts this server's reports, so a policy can tell a new report from the one it saw. */
  readonly seq: number;
  /** Tasks the backend completed per second over its last interval (0 from original backends). */
  readonly qps: number;
  /** Tasks the backend failed per second over its last interval. */
  readonly eps: number;
  /** Tasks waiting for a worker when it reported (absent or 0 from original backends). */
  readonly queueLength?: number;
}

/** One live server as policies see it. */
export interface ServerView {
  /** Position in the order servers became known: strictly increasing, never reused. */
  readonly id: number;
  /** `host:port` that clients should dial. */
  readonly address: string;
  /** Latest load report, or `undefined` before the first one. */
  readonly load: LoadView | undefined;
  /** Clock reading (ms) when the server became known: slow start and blackout count from it. */
  readonly addedAtMs: number;
}

/** A successful pick. Built once per snapshot, so picking allocates nothing. */
export interface Picked {
  readonly kind: "pick";
  readonly server: ServerView;
  /** Index of `server` in `snapshot.servers`. */
  readonly index: number;
}

/** No server can be named. */
export interface NoPick {
  readonly kind: "none";
  readonly reason: string;
}

/** What a pick returns. */
export type PickResult = Picked | NoPick;

/** The live server set at one moment. Never mutated; a change builds a new one. */
export interface Snapshot {
  /** Increases with every new snapshot. */
  readonly version: number;
  /** Live servers in the order they became known (ascending `id`). */
  readonly servers: readonly ServerView[];
  /** `picks[i]` is the result naming `servers[i]`. */
  readonly picks: readonly Picked[];
}

/** Per-pick inputs besides the snapshot. Callers may reuse one object across picks. */
export interface PickContext {
  /** The asking client's id (may be empty). */
  clientId: string;
  /** Current clock reading in milliseconds. */
  nowMs: number;
  /** Uniform random number in [0, 1). */
  rng: () => number;
}

/** Inputs of `prepare` besides the snapshot. */
export interface PrepareContext<S> {
  /** The state built for `previousSnapshot` (absent the first time). */
  previous?: S;
  /** The snapshot `previous` was built for; the same object as `snapshot` on a timer refresh. */
  previousSnapshot?: Snapshot;
  /** Current clock reading in milliseconds. @default {0} */
  nowMs?: number;
  /** Uniform random number in [0, 1), e.g. for a scheduler's random start. @default {Math.random} */
  rng?: () => number;
  /**
   * Live balancers picking from the same servers, this one included: a load-aware policy counts
   * each of its own picks this many times, assuming the others pick at its rate. @default {1}
   */
  replicas?: number;
}

/**
 * The probes a policy asks for and the answers it learns from (`prequal`). The holder takes the
 * server ids to probe after a pick, probes them off the pick path, and hands back each answer
 * or failure; all three run on the slow path.
 */
export interface Probing<S> {
  /** The next server id to probe, taken off the policy's queue; -1 when none is waiting. */
  take(state: S): number;
  /** Server `id` answered at `nowMs`: `rif` requests in flight, `latencyMs` expected now. */
  answered(
    snapshot: Snapshot,
    state: S,
    id: number,
    rif: number,
    latencyMs: number,
    nowMs: number,
  ): void;
  /** A probe of server `id` failed; `silent`: it cannot answer probes at all (UNIMPLEMENTED). */
  failed(snapshot: Snapshot, state: S, id: number, silent: boolean): void;
}

/** A load-balancing policy. `S` is its state, owned by whoever holds the snapshot. */
export interface Policy<S = unknown> {
  /** The name used by `--policy`. */
  readonly name: string;
  /**
   * How often the holder should call `prepare` again with the same snapshot, for what changes
   * with time alone (ms); `undefined` when nothing does.
   */
  readonly refreshMs?: number;
  /** Slow path: state for `snapshot`, carrying over from `context.previous`. */
  prepare(snapshot: Snapshot, context?: PrepareContext<S>): S;
  /** Hot path: names a server. */
  pick(snapshot: Snapshot, state: S, context: PickContext): PickResult;
  /**
   * Slow path, optional: each server's weight as the policy sees it now (`weights[i]` for
   * `snapshot.servers[i]`, 1 for an average server), for `ListServers` and `WatchServers`.
   */
  weights?(snapshot: Snapshot, state: S, nowMs: number): number[];
  /** Present when the policy learns from probes its holder sends for it. */
  readonly probing?: Probing<S>;
}

/** The result returned when the snapshot has no server. */
export const NO_SERVERS: NoPick = Object.freeze({ kind: "none", reason: "no server is known" });

/** Builds a snapshot from servers sorted by ascending `id` (throws otherwise: a caller bug). */
export function createSnapshot(version: number, servers: readonly ServerView[]): Snapshot {
  for (let i = 1; i < servers.length; i++) {
    if (servers[i - 1].id >= servers[i].id) {
      throw new RangeError("Cannot build snapshot as servers must be in ascending id order");
    }
  }
  const frozen = Object.freeze(servers.slice());
  const picks = Object.freeze(
    frozen.map((server, index) => Object.freeze({ kind: "pick" as const, server, index })),
  );
  return Object.freeze({ version, servers: frozen, picks });
}

/** Index of the first server whose id is greater than `id`, or `servers.length`. */
export function indexAfterId(servers: readonly ServerView[], id: number): number {
  let lo = 0;
  let hi = servers.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (servers[mid].id <= id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the server whose id is `id` in `servers`, or -1 when it is not there. */
export function indexOfId(servers: readonly ServerView[], id: number): number {
  const i = indexAfterId(servers, id) - 1;
  return i >= 0 && servers[i].id === id ? i : -1;
}
