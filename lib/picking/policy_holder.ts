/**
 * A policy bound to the snapshot it last prepared, and its state: the one place that calls a
 * policy's `prepare` and `pick`. The balancer's {@linkcode Picker} and the simulator both drive
 * policies through it, so the simulator runs them exactly as a balancer does.
 *
 * @module
 */
import type { PickContext, PickResult, Policy, Snapshot } from "../../policies/types.ts";

/** A policy, the snapshot it prepared last, and its prepared state. */
export class PolicyHolder {
  #policy: Policy<unknown>;
  #snapshot: Snapshot;
  #state: unknown;
  readonly #rng: () => number;
  readonly #context: PickContext;
  #replicas: number;

  /** Prepares `policy` for `snapshot` at `nowMs`, with no state before it. */
  constructor(
    policy: Policy<unknown>,
    snapshot: Snapshot,
    nowMs: number,
    rng: () => number,
    replicas = 1,
  ) {
    this.#policy = policy;
    this.#rng = rng;
    this.#replicas = replicas;
    this.#snapshot = snapshot;
    this.#state = policy.prepare(snapshot, { nowMs, rng, replicas });
    this.#context = { clientId: "", nowMs, rng };
  }

  /** The policy held. */
  get policy(): Policy<unknown> {
    return this.#policy;
  }

  /** The snapshot the state was prepared for. */
  get snapshot(): Snapshot {
    return this.#snapshot;
  }

  /** Balancers that share the servers' load, as the policy is told (at least 1). */
  get replicas(): number {
    return this.#replicas;
  }

  /** Sets the replica count; the caller prepares again for it to take effect. */
  set replicas(count: number) {
    this.#replicas = count;
  }

  /**
   * Prepares for `snapshot` (a new one, or the same one again when the policy's refresh is due),
   * handing the policy its previous state and snapshot.
   */
  prepare(snapshot: Snapshot, nowMs: number): void {
    this.#state = this.#policy.prepare(snapshot, {
      previous: this.#state,
      previousSnapshot: this.#snapshot,
      nowMs,
      rng: this.#rng,
      replicas: this.#replicas,
    });
    this.#snapshot = snapshot;
  }

  /** Holds `policy` instead, prepared afresh for `snapshot`: it never sees another's state. */
  replace(policy: Policy<unknown>, snapshot: Snapshot, nowMs: number): void {
    this.#policy = policy;
    this.#snapshot = snapshot;
    this.#state = policy.prepare(snapshot, { nowMs, rng: this.#rng, replicas: this.#replicas });
  }

  /** The policy's pick for `clientId` at `nowMs` (synchronous; reuses one context). */
  pick(clientId: string, nowMs: number): PickResult {
    const context = this.#context;
    context.clientId = clientId;
    context.nowMs = nowMs;
    return this.#policy.pick(this.#snapshot, this.#state, context);
  }

  /** The next server id the policy wants probed; -1 when none (or it does not probe). */
  takeProbe(): number {
    return this.#policy.probing?.take(this.#state) ?? -1;
  }

  /** Server `id` answered a probe at `nowMs` (ignored by a policy that does not probe). */
  probeAnswered(id: number, rif: number, latencyMs: number, nowMs: number): void {
    this.#policy.probing?.answered(this.#snapshot, this.#state, id, rif, latencyMs, nowMs);
  }

  /** A probe of server `id` failed; `silent`: it cannot answer probes at all. */
  probeFailed(id: number, silent: boolean): void {
    this.#policy.probing?.failed(this.#snapshot, this.#state, id, silent);
  }

  /** The policy's weight per server, or 1 each when it has none. */
  weights(nowMs: number): number[] {
    return this.#policy.weights?.(this.#snapshot, this.#state, nowMs) ??
      this.#snapshot.servers.map(() => 1);
  }
}
