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

  /**
   * Names a server for `clientId`, other than those in `avoid` when the set has another one.
   * Synchronous, no I/O, allocates nothing.
   */
  pick(clientId: string, avoid?: readonly string[]): PickResult {
    if (this.#set.snapshot !== this.#snapshot) this.#update(this.#set.snapshot);
    const context = this.#context;
    context.clientId = clientId;
    context.nowMs = this.#clock();
    const snapshot = this.#snapshot;
    const result = this.#policy.pick(snapshot, this.#state, context);
    if (!avoid?.length || result.kind === "none" || !avoid.includes(result.server.address)) {
      return result;
    }
    // A retry after a failure: ask the policy again a few times (it may rotate away), then take
    // the first server not avoided (a policy such as pick_first always names the same one).
    for (let i = 0; i < Math.min(snapshot.servers.length, 4); i++) {
      const again = this.#policy.pick(snapshot, this.#state, context);
      if (again.kind === "pick" && !avoid.includes(again.server.address)) return again;
    }
    for (const candidate of snapshot.picks) {
      if (!avoid.includes(candidate.server.address)) return candidate;
    }
    return result; // every live server is avoided: the client may as well try one again
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
