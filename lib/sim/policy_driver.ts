/**
 * Drives a real policy from `policies/` inside the simulator through the balancer's own
 * {@linkcode PolicyHolder}, as `lib/picking/picker.ts` does: `prepare` on every new snapshot and
 * again every `refreshMs` on the same one. The simulator calls {@linkcode PolicyDriver.update}
 * and {@linkcode PolicyDriver.refresh} from its events instead of a listener and a timer.
 *
 * @module
 */
import type { Policy, Snapshot } from "../../policies/types.ts";
import { PolicyHolder } from "../picking/policy_holder.ts";
import type { SimPicker } from "./sim_state.ts";

/** One holder of a policy's state: a balancer (lookaside) or a client (watch). */
export class PolicyDriver implements SimPicker {
  readonly #held: PolicyHolder;
  readonly #clientIds: readonly string[];

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
    this.#held = new PolicyHolder(policy, snapshot, nowMs, rng, replicas);
    this.#clientIds = clientIds;
  }

  /** How often the policy wants `prepare` again on the same snapshot (ms), if at all. */
  get refreshMs(): number | undefined {
    return this.#held.policy.refreshMs;
  }

  /** A new snapshot, as the picker's snapshot listener takes it. */
  update(snapshot: Snapshot, nowMs: number): void {
    if (snapshot !== this.#held.snapshot) this.#held.prepare(snapshot, nowMs);
  }

  /** The refresh timer fired: `prepare` again on the same snapshot. */
  refresh(nowMs: number): void {
    this.#held.prepare(this.#held.snapshot, nowMs);
  }

  /** Names a server index for client `clientIndex` at `nowMs` (-1 when the policy names none). */
  pick(clientIndex: number, nowMs: number): number {
    const result = this.#held.pick(this.#clientIds[clientIndex], nowMs);
    return result.kind === "pick" ? result.index : -1;
  }
}
