/**
 * Binds a policy to a {@linkcode ServerSet}: prepares the policy's state on each new snapshot
 * (slow path) and answers picks from it (hot path).
 *
 * @module
 */
import type { PickContext, PickResult, Policy, Snapshot } from "../policies/types.ts";
import type { ServerSet } from "./server_set.ts";

/** Picks servers from a set under one policy. */
export class Picker {
  #policy: Policy<unknown>;
  #snapshot: Snapshot;
  #state: unknown;
  #context: PickContext;
  #clock: () => number;
  #unsubscribe: () => void;
  #set: ServerSet;

  /** Creates a picker; `clock` (ms) and `rng` are handed to the policy. */
  constructor(
    policy: Policy<unknown>,
    set: ServerSet,
    clock: () => number = performance.now.bind(performance),
    rng: () => number = Math.random,
  ) {
    this.#policy = policy;
    this.#set = set;
    this.#snapshot = set.snapshot;
    this.#state = policy.prepare(this.#snapshot);
    this.#clock = clock;
    this.#context = { clientId: "", nowMs: 0, rng };
    this.#unsubscribe = set.onSnapshot((snapshot) => this.#update(snapshot));
  }

  /** The policy's name. */
  get policyName(): string {
    return this.#policy.name;
  }

  /** Names a server for `clientId`. Synchronous, no I/O, allocates nothing. */
  pick(clientId: string): PickResult {
    if (this.#set.snapshot !== this.#snapshot) this.#update(this.#set.snapshot);
    const context = this.#context;
    context.clientId = clientId;
    context.nowMs = this.#clock();
    return this.#policy.pick(this.#snapshot, this.#state, context);
  }

  /** Stops following the set. */
  close(): void {
    this.#unsubscribe();
  }

  #update(snapshot: Snapshot): void {
    if (snapshot === this.#snapshot) return;
    this.#state = this.#policy.prepare(snapshot, this.#state, this.#snapshot);
    this.#snapshot = snapshot;
  }
}
