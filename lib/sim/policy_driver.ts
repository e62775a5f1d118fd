/**
 * Drives a real policy from `policies/` inside the simulator the way `lib/picking/picker.ts`
 * drives it in a balancer: `prepare` on every new snapshot (with the previous state and
 * snapshot) and again every `refreshMs` on the same snapshot, `pick` with a reused context whose
 * clock is the simulator's. The simulator calls {@linkcode PolicyDriver.update} and
 * {@linkcode PolicyDriver.refresh} from its events instead of a listener and a timer.
 *
 * @module
 */
import type { PickContext, Policy, Snapshot } from "../../policies/types.ts";
import type { SimPicker } from "./sim_state.ts";

/** One holder of a policy's state: a balancer (lookaside) or a client (watch). */
export class PolicyDriver implements SimPicker {
  readonly #policy: Policy<unknown>;
  readonly #rng: () => number;
  readonly #replicas: number;
  readonly #context: PickContext;
  readonly #clientIds: readonly string[];
  #snapshot: Snapshot;
  #state: unknown;

  /**
   * Prepares `policy` for `snapshot` at `nowMs`; picks name the client from `clientIds`, and
   * `replicas` is what a balancer hands its policy (the live balancers).
   */
  constructor(
    policy: Policy<unknown>,
    snapshot: Snapshot,
    nowMs: number,
    rng: () => number,
    replicas: number,
    clientIds: readonly string[],
  ) {
    this.#policy = policy;
    this.#rng = rng;
    this.#replicas = replicas;
    this.#clientIds = clientIds;
    this.#snapshot = snapshot;
    this.#state = policy.prepare(snapshot, { nowMs, rng, replicas });
    this.#context = { clientId: "", nowMs, rng };
  }

  /** How often the policy wants `prepare` again on the same snapshot (ms), if at all. */
  get refreshMs(): number | undefined {
    return this.#policy.refreshMs;
  }

  /** A new snapshot, as the picker's snapshot listener takes it. */
  update(snapshot: Snapshot, nowMs: number): void {
    if (snapshot === this.#snapshot) return;
    this.#prepare(snapshot, nowMs);
  }

  /** The refresh timer fired: `prepare` again on the same snapshot. */
  refresh(nowMs: number): void {
    this.#prepare(this.#snapshot, nowMs);
  }

  /** Names a server index for client `clientIndex` at `nowMs` (-1 when the policy names none). */
  pick(clientIndex: number, nowMs: number): number {
    const context = this.#context;
    context.clientId = this.#clientIds[clientIndex];
    context.nowMs = nowMs;
    const result = this.#policy.pick(this.#snapshot, this.#state, context);
    return result.kind === "pick" ? result.index : -1;
  }

  #prepare(snapshot: Snapshot, nowMs: number): void {
    this.#state = this.#policy.prepare(snapshot, {
      previous: this.#state,
      previousSnapshot: this.#snapshot,
      nowMs,
      rng: this.#rng,
      replicas: this.#replicas,
    });
    this.#snapshot = snapshot;
  }
}
