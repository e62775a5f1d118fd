/**
 * Drives a real policy from `policies/` inside the simulator through the balancer's own
 * {@linkcode PolicyHolder}, as `lib/picking/picker.ts` does: `prepare` on every new snapshot and
 * again every `refreshMs` on the same one. Snapshots come from a {@linkcode SnapshotFeed}, which,
 * like the balancer's `ServerSet`, builds one snapshot for all the reports since the last one
 * was read.
 *
 * A holder is lazy by default: it prepares when it next picks, once, for the latest snapshot,
 * with the clock of the instant that snapshot (or the last refresh tick) arrived. For a policy
 * whose `prepare` draws no random number, that state is the one a picker's listener leaves after
 * preparing each snapshot in turn, since nothing is picked in between (every policy of
 * `policies/` but `weighted_round_robin`, whose scheduler takes a random start, moving the random
 * stream; `tests/simulator_test.ts` checks both). Eager holders prepare at once, as the picker.
 *
 * @module
 */
import {
  createSnapshot,
  type Policy,
  type ServerView,
  type Snapshot,
} from "../../policies/types.ts";
import { PolicyHolder } from "../picking/policy_holder.ts";
import type { SimPicker } from "./sim_state.ts";

/**
 * Where holders read snapshots: the server set the reports change (built lazily, one snapshot for
 * every change since the last read, as `ServerSet` rebuilds once per burst), or what a balancer
 * last published to its watch clients.
 */
export class SnapshotFeed {
  #snapshot: Snapshot;
  readonly #views: ServerView[];
  #dirty = false;
  /** Changes so far: a holder that saw fewer has a snapshot to catch up with. */
  changes = 0;
  /** When the last change arrived (ms). */
  changedAtMs = 0;

  /** A feed of `views` (kept and changed in place by {@linkcode set}). */
  constructor(views: ServerView[]) {
    this.#views = views;
    this.#snapshot = createSnapshot(1, views);
  }

  /** Server `index` looks like `view` from `nowMs` on (a load report arrived). */
  set(index: number, view: ServerView, nowMs: number): void {
    this.#views[index] = view;
    this.#dirty = true;
    this.changes++;
    this.changedAtMs = nowMs;
  }

  /** The feed shows `snapshot` from `nowMs` on (a balancer published it). */
  publish(snapshot: Snapshot, nowMs: number): void {
    if (snapshot === this.#snapshot) return;
    this.#snapshot = snapshot;
    this.changes++;
    this.changedAtMs = nowMs;
  }

  /** The latest snapshot, built now if a change is pending. */
  get snapshot(): Snapshot {
    if (this.#dirty) {
      this.#dirty = false;
      this.#snapshot = createSnapshot(this.#snapshot.version + 1, this.#views);
    }
    return this.#snapshot;
  }
}

/** One holder of a policy's state: a balancer (lookaside) or a client (watch). */
export class PolicyDriver implements SimPicker {
  readonly #held: PolicyHolder;
  readonly #clientIds: readonly string[];
  readonly #feed: SnapshotFeed;
  readonly #eager: boolean;
  /** Feed changes this holder has prepared for. */
  #seen: number;
  /** A refresh tick not prepared yet (lazy holders), else NaN. */
  #refreshDueMs = NaN;

  /**
   * Prepares `policy` for `feed`'s snapshot at `nowMs`; picks name the client from `clientIds`,
   * `replicas` is what a balancer hands its policy (the live balancers), and `eager` prepares on
   * every {@linkcode update} and {@linkcode refresh} instead of at the next pick.
   */
  constructor(
    policy: Policy<unknown>,
    feed: SnapshotFeed,
    nowMs: number,
    rng: () => number,
    replicas: number,
    clientIds: readonly string[],
    eager = false,
  ) {
    this.#feed = feed;
    this.#seen = feed.changes;
    this.#held = new PolicyHolder(policy, feed.snapshot, nowMs, rng, replicas);
    this.#clientIds = clientIds;
    this.#eager = eager;
  }

  /** How often the policy wants `prepare` again on the same snapshot (ms), if at all. */
  get refreshMs(): number | undefined {
    return this.#held.policy.refreshMs;
  }

  /** The feed changed: an eager holder prepares now, as the picker's snapshot listener does. */
  update(nowMs: number): void {
    if (!this.#eager) return;
    this.#seen = this.#feed.changes;
    const snapshot = this.#feed.snapshot;
    if (snapshot !== this.#held.snapshot) this.#held.prepare(snapshot, nowMs);
  }

  /** The refresh timer fired: `prepare` again on the same snapshot (now, or before the next pick). */
  refresh(nowMs: number): void {
    if (this.#eager) this.#held.prepare(this.#held.snapshot, nowMs);
    else this.#refreshDueMs = nowMs;
  }

  /** Names a server index for client `clientIndex` at `nowMs` (-1 when the policy names none). */
  pick(clientIndex: number, nowMs: number): number {
    if (this.#seen !== this.#feed.changes || this.#refreshDueMs === this.#refreshDueMs) {
      this.#catchUp();
    }
    const result = this.#held.pick(this.#clientIds[clientIndex], nowMs);
    return result.kind === "pick" ? result.index : -1;
  }

  /** The next server id the policy wants probed; -1 when none (or it does not probe). */
  takeProbe(): number {
    return this.#held.takeProbe();
  }

  /** Server `id` answered a probe at `nowMs`. */
  probeAnswered(id: number, rif: number, latencyMs: number, nowMs: number): void {
    this.#held.probeAnswered(id, rif, latencyMs, nowMs);
  }

  /** Lazy: one prepare for what happened since the last pick, at the time of its last event. */
  #catchUp(): void {
    const dueMs = this.#refreshDueMs;
    this.#refreshDueMs = NaN;
    if (this.#seen !== this.#feed.changes) {
      this.#seen = this.#feed.changes;
      const snapshot = this.#feed.snapshot;
      if (snapshot !== this.#held.snapshot) {
        const changedAtMs = this.#feed.changedAtMs;
        this.#held.prepare(snapshot, dueMs > changedAtMs ? dueMs : changedAtMs);
        return;
      }
    }
    if (dueMs === dueMs) this.#held.prepare(this.#held.snapshot, dueMs);
  }
}
