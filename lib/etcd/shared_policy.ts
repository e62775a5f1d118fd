/**
 * The policy shared by the balancers of one etcd: one key (`--policy-key`) holding a policy name,
 * written by `SetPolicy` and the dashboard and watched by every balancer, so replicas run the same
 * policy and a balancer started later takes it over its `--policy`. The watch starts from "now",
 * so a compaction cannot cancel it, and the key is read again at every (re)connect, so a change
 * made while the watch was down is not missed.
 *
 * @module
 */
import type { Etcd3, Watcher } from "etcd3";
import { getLogger } from "@logtape/logtape";
import { isPolicyName, POLICY_NAMES, type PolicyName } from "../../policies/mod.ts";

const log = getLogger(["lb", "etcd"]);

/** Default key of the shared policy. */
export const DEFAULT_POLICY_KEY = "/config/policy";

/** Options of {@linkcode SharedPolicy}. */
export interface SharedPolicyOptions {
  client: Etcd3;
  key: string;
  /** Switches this balancer to `policy` (called only for a valid name it does not run). */
  apply: (policy: PolicyName) => void;
  /** The policy this balancer runs now. */
  current: () => string;
}

/**
 * Follows (and writes) the shared policy key. A value that is not a policy name is logged and
 * ignored; a deleted key leaves the balancer on the policy it runs.
 */
export class SharedPolicy {
  #options: SharedPolicyOptions;
  #watcher: Watcher | undefined;
  #stopped = false;
  /** The policy being written by {@linkcode publish}, whose echo the watch skips. */
  #publishing: PolicyName | undefined;

  /** Creates the follower; nothing is read before {@linkcode start}. */
  constructor(options: SharedPolicyOptions) {
    this.#options = options;
  }

  /** The key, for messages. */
  get key(): string {
    return this.#options.key;
  }

  /**
   * Reads the key (applying it if set) and watches it. Resolves once the first read is done, or
   * failed (etcd unreachable: the watch then reads it when it connects).
   */
  async start(): Promise<void> {
    const watcher = this.#options.client.watch().key(this.#options.key).watcher();
    this.#watcher = watcher;
    watcher.on("connected", () => this.#read("the etcd watch connected"));
    watcher.on("put", (kv) => this.#take(kv.value.toString(), "a change in etcd"));
    watcher.on("delete", () => {
      log.info("Policy key {key} deleted in etcd: this balancer keeps {policy}", {
        key: this.#options.key,
        policy: this.#options.current(),
      });
    });
    watcher.on("error", (error) => {
      if (!this.#stopped) log.warn("etcd watch of {key}: {error}", { key: this.key, error });
    });
    await this.#read("start");
  }

  /**
   * Writes `policy` for every balancer; rejects if etcd does not take it. The caller switches
   * this balancer itself once it resolves (so its log names who asked): the watch's echo of
   * this write is not applied here.
   */
  async publish(policy: PolicyName): Promise<void> {
    this.#publishing = policy;
    try {
      await this.#options.client.put(this.#options.key).value(policy);
    } finally {
      this.#publishing = undefined;
    }
  }

  /** Stops watching. The caller closes the client afterwards. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#watcher?.cancel().catch(() => {});
  }

  async #read(why: string): Promise<void> {
    try {
      const value = await this.#options.client.get(this.#options.key).string();
      if (value !== null && !this.#stopped) this.#take(value, `the etcd key (${why})`);
    } catch (error) {
      log.warn("Could not read the shared policy {key} ({why}): {error}", {
        key: this.#options.key,
        why,
        error,
      });
    }
  }

  #take(value: string, source: string): void {
    if (this.#stopped) return;
    if (!isPolicyName(value)) {
      log.warn("Ignored the shared policy {key}: '{value}' is not one of {policies}", {
        key: this.#options.key,
        value: value.slice(0, 100),
        policies: POLICY_NAMES.join(", "),
      });
      return;
    }
    if (value === this.#options.current() || value === this.#publishing) return;
    log.info("Policy {policy} shared by the balancers, from {source}", { policy: value, source });
    this.#options.apply(value);
  }
}
