/**
 * Binds a policy to a {@linkcode ServerSet}: prepares the policy's state on each new snapshot
 * and on the policy's refresh timer (slow path), and answers picks from it (hot path). The policy
 * can be swapped while the balancer runs.
 *
 * @module
 */
import { indexOfId, type PickResult, type Policy, type Snapshot } from "../../policies/types.ts";
import { PolicyHolder } from "./policy_holder.ts";
import type { ServerSet } from "./server_set.ts";

/** Picks servers from a set under one policy at a time. */
export class Picker {
  #held: PolicyHolder;
  #clock: () => number;
  #unsubscribe: () => void;
  #set: ServerSet;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Picks of each server of the held snapshot (by index) since the last fold. */
  #counts: Float64Array;
  /** Picks folded so far: policy name → address → count. */
  #totals = new Map<string, Map<string, number>>();
  /** Called after a pick when the policy probes: sends the probes it asked for. */
  #onProbes: (() => void) | undefined;

  /** Creates a picker; `clock` (ms) and `rng` are handed to the policy. */
  constructor(
    policy: Policy<unknown>,
    set: ServerSet,
    clock: () => number = performance.now.bind(performance),
    rng: () => number = Math.random,
  ) {
    this.#set = set;
    this.#clock = clock;
    this.#held = new PolicyHolder(policy, set.snapshot, clock(), rng);
    this.#counts = new Float64Array(set.snapshot.servers.length);
    this.#unsubscribe = set.onSnapshot((snapshot) => this.#update(snapshot));
    this.#startTimer();
  }

  /** The active policy's name. */
  get policyName(): string {
    return this.#held.policy.name;
  }

  /** The snapshot the policy's state was built for. */
  get snapshot(): Snapshot {
    return this.#held.snapshot;
  }

  /** The live balancer replicas the policy assumes. */
  get replicas(): number {
    return this.#held.replicas;
  }

  /**
   * Sets the number of live balancer replicas (at least 1), and prepares the policy again with it
   * (slow path).
   */
  setReplicas(count: number): void {
    const replicas = Math.max(1, count);
    if (replicas === this.#held.replicas) return;
    this.#held.replicas = replicas;
    this.#update(this.#held.snapshot, true);
  }

  /** Swaps in `policy` (slow path); picks from now on use it. */
  setPolicy(policy: Policy<unknown>): void {
    // Flush pending changes first: the listeners prepare them with the old policy and its own
    // state. A new policy never sees another policy's state as its `previous`.
    const snapshot = this.#set.snapshot;
    this.#fold(snapshot);
    this.#held.replace(policy, snapshot, this.#clock());
    this.#startTimer();
  }

  /** Each server's weight under the active policy (1 each when it has none). Slow path. */
  weights(): number[] {
    return this.#held.weights(this.#clock());
  }

  /**
   * Picks made so far, by policy name and server address (slow path). Servers that left keep
   * their counts.
   */
  pickCounts(): ReadonlyMap<string, ReadonlyMap<string, number>> {
    this.#fold(this.#held.snapshot);
    return this.#totals;
  }

  /**
   * Names a server for `clientId`, other than those in `avoid` when the set has another one,
   * and counts the pick. Synchronous, no I/O, allocates nothing.
   */
  pick(clientId: string, avoid?: readonly string[]): PickResult {
    const result = this.#pick(clientId, avoid);
    if (result.kind === "pick") this.#counts[result.index]++;
    if (this.#onProbes !== undefined && this.#held.policy.probing) this.#onProbes();
    return result;
  }

  /**
   * Who sends the probes a probing policy asks for (`prequal`): called after each pick, it takes
   * them with {@linkcode takeProbe} off the pick path. None: a probing policy gets no answers.
   */
  set onProbes(fn: (() => void) | undefined) {
    this.#onProbes = fn;
  }

  /** Whether the active policy probes servers. */
  get probing(): boolean {
    return this.#held.policy.probing !== undefined;
  }

  /** The next server id the policy wants probed, or -1. Slow path. */
  takeProbe(): number {
    return this.#held.takeProbe();
  }

  /** The address of server `id` in the held snapshot, or undefined if it left. */
  addressOf(id: number): string | undefined {
    const servers = this.#held.snapshot.servers;
    const i = indexOfId(servers, id);
    return i >= 0 ? servers[i].address : undefined;
  }

  /** Server `id` answered a probe: `rif` requests in flight, `latencyMs` expected (-1: unknown). */
  probeAnswered(id: number, rif: number, latencyMs: number): void {
    this.#held.probeAnswered(id, rif, latencyMs, this.#clock());
  }

  /** A probe of server `id` failed; `silent`: it cannot answer probes at all. */
  probeFailed(id: number, silent: boolean): void {
    this.#held.probeFailed(id, silent);
  }

  #pick(clientId: string, avoid: readonly string[] | undefined): PickResult {
    const held = this.#held;
    if (this.#set.snapshot !== held.snapshot) this.#update(this.#set.snapshot);
    const nowMs = this.#clock();
    const snapshot = held.snapshot;
    const result = held.pick(clientId, nowMs);
    if (!avoid?.length || result.kind === "none" || !avoid.includes(result.server.address)) {
      return result;
    }
    // A retry after a failure: ask the policy again a few times (it may rotate away), then take
    // the first server not avoided (a policy such as pick_first always names the same one).
    for (let i = 0; i < Math.min(snapshot.servers.length, 4); i++) {
      const again = held.pick(clientId, nowMs);
      if (again.kind === "pick" && !avoid.includes(again.server.address)) return again;
    }
    for (const candidate of snapshot.picks) {
      if (!avoid.includes(candidate.server.address)) return candidate;
    }
    return result; // every live server is avoided: the client may as well try one again
  }

  /** Stops following the set and the refresh timer. */
  close(): void {
    this.#unsubscribe();
    clearInterval(this.#timer);
  }

  #startTimer(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    const every = this.#held.policy.refreshMs;
    if (every !== undefined) {
      this.#timer = setInterval(() => this.#update(this.#held.snapshot, true), every);
      Deno.unrefTimer(this.#timer as unknown as number);
    }
  }

  /**
   * Adds the picks counted against the held snapshot to the totals of the active policy, and
   * starts counting afresh against `next`.
   */
  #fold(next: Snapshot): void {
    const servers = this.#held.snapshot.servers;
    const name = this.#held.policy.name;
    let totals = this.#totals.get(name);
    for (let i = 0; i < servers.length; i++) {
      if (this.#counts[i] === 0) continue;
      if (totals === undefined) this.#totals.set(name, totals = new Map());
      const address = servers[i].address;
      totals.set(address, (totals.get(address) ?? 0) + this.#counts[i]);
    }
    if (this.#counts.length === next.servers.length) this.#counts.fill(0);
    else this.#counts = new Float64Array(next.servers.length);
  }

  #update(snapshot: Snapshot, refresh = false): void {
    if (snapshot === this.#held.snapshot && !refresh) return;
    if (snapshot !== this.#held.snapshot) this.#fold(snapshot);
    this.#held.prepare(snapshot, this.#clock());
  }
}
