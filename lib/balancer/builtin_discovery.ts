/**
 * Built-in discovery (`--discovery builtin`): backends call `RegisterServer` on the balancer and
 * their load reports act as heartbeats; a server not heard from for the TTL is dropped. It needs
 * nothing but the balancer, which makes it the quick-start mode; etcd is the production mode.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ServerSet } from "../picking/server_set.ts";

const log = getLogger(["lb", "builtin"]);

/** Time after its last register or report at which a server is dropped. */
export const DEFAULT_BUILTIN_TTL_MS = 5_000;

/** Keeps the set's membership from registrations and heartbeats. */
export class BuiltinRegistry {
  #set: ServerSet;
  #ttlMs: number;
  #clock: () => number;
  #lastSeen = new Map<string, number>();
  #timer: ReturnType<typeof setInterval> | undefined;

  /** Creates a registry over `set`; call {@linkcode start} to begin expiring servers. */
  constructor(set: ServerSet, ttlMs = DEFAULT_BUILTIN_TTL_MS, clock = () => performance.now()) {
    this.#set = set;
    this.#ttlMs = ttlMs;
    this.#clock = clock;
  }

  /** Adds (or refreshes) `address`. Returns true when it is new. */
  register(address: string): boolean {
    this.#lastSeen.set(address, this.#clock());
    const added = this.#set.add(address);
    if (added) log.info("Server {address} registered", { address });
    return added;
  }

  /** Refreshes `address` if it is registered; returns false otherwise. */
  heartbeat(address: string): boolean {
    if (!this.#lastSeen.has(address)) return false;
    this.#lastSeen.set(address, this.#clock());
    return true;
  }

  /** Drops every server not heard from for the TTL; returns the dropped addresses. */
  sweep(): string[] {
    const deadline = this.#clock() - this.#ttlMs;
    const dropped: string[] = [];
    for (const [address, seen] of this.#lastSeen) {
      if (seen < deadline) {
        this.#lastSeen.delete(address);
        this.#set.remove(address);
        dropped.push(address);
        log.warn("Server {address} dropped: not heard from for {ttlMs} ms", {
          address,
          ttlMs: this.#ttlMs,
        });
      }
    }
    return dropped;
  }

  /** Starts sweeping several times per TTL, so a silent server goes within about 1.2 TTL. */
  start(): void {
    this.#timer ??= setInterval(() => this.sweep(), Math.max(50, this.#ttlMs / 5));
  }

  /** Stops sweeping. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
