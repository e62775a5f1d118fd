/**
 * The balancer's live server set: membership from discovery, load from reports, published to
 * the pick path as immutable {@linkcode Snapshot}s.
 *
 * Every change marks the set dirty and schedules one rebuild in a microtask, so a burst of
 * reports costs one snapshot, and a removed server is out of the picks before the balancer
 * handles its next call. Listeners (the {@linkcode Picker}) hear of each new snapshot on this
 * slow path, never during a pick.
 *
 * @module
 */
import { createSnapshot, type ServerView, type Snapshot } from "../policies/types.ts";

/** A load report as the set stores it. */
export interface LoadInput {
  cpuLoad: number;
  inFlight: number;
  /** Tasks completed per second over the backend's last interval. @default {0} */
  qps?: number;
  /** Tasks failed per second over the backend's last interval. @default {0} */
  eps?: number;
}

/** Called with every new snapshot. */
export type SnapshotListener = (snapshot: Snapshot, previous: Snapshot) => void;

/** The live servers, keyed by address. */
export class ServerSet {
  #servers = new Map<string, ServerView>();
  #nextId = 0;
  #snapshot: Snapshot = createSnapshot(0, []);
  #dirty = false;
  #listeners: SnapshotListener[] = [];
  #clock: () => number;

  /** Creates an empty set; `clock` stamps load reports (ms). */
  constructor(clock: () => number = performance.now.bind(performance)) {
    this.#clock = clock;
  }

  /** The current snapshot (rebuilt first if a change is pending). */
  get snapshot(): Snapshot {
    if (this.#dirty) this.flush();
    return this.#snapshot;
  }

  /** Number of live servers. */
  get size(): number {
    return this.#servers.size;
  }

  /** Whether `address` is live. */
  has(address: string): boolean {
    return this.#servers.has(address);
  }

  /** Addresses of the live servers, in the order they became known. */
  addresses(): string[] {
    return [...this.#servers.keys()];
  }

  /**
   * Adds `address` (known since `addedAtMs`, by default now); returns false if it was already
   * live (its id and load are kept).
   */
  add(address: string, addedAtMs: number = this.#clock()): boolean {
    if (this.#servers.has(address)) return false;
    this.#servers.set(
      address,
      Object.freeze({ id: this.#nextId++, address, load: undefined, addedAtMs }),
    );
    this.#markDirty();
    return true;
  }

  /** Removes `address`; returns false if it was not live. */
  remove(address: string): boolean {
    if (!this.#servers.delete(address)) return false;
    this.#markDirty();
    return true;
  }

  /** Makes the live set exactly `addresses`: adds the new, removes the missing, keeps the rest. */
  replaceAll(addresses: Iterable<string>): { added: string[]; removed: string[] } {
    const wanted = new Set(addresses);
    const removed = [...this.#servers.keys()].filter((address) => !wanted.has(address));
    for (const address of removed) this.remove(address);
    const added = [...wanted].filter((address) => this.add(address));
    return { added, removed };
  }

  /**
   * Records a load report (made at `reportedAtMs`, by default now); returns false, changing
   * nothing, if `address` is not live.
   */
  report(address: string, input: LoadInput, reportedAtMs: number = this.#clock()): boolean {
    const server = this.#servers.get(address);
    if (server === undefined) return false;
    const load = Object.freeze({
      cpuLoad: input.cpuLoad,
      inFlight: input.inFlight,
      reportedAtMs,
      seq: (server.load?.seq ?? -1) + 1,
      qps: input.qps ?? 0,
      eps: input.eps ?? 0,
    });
    this.#servers.set(address, Object.freeze({ ...server, load }));
    this.#markDirty();
    return true;
  }

  /** Registers a listener for new snapshots; returns a function that removes it. */
  onSnapshot(listener: SnapshotListener): () => void {
    this.#listeners.push(listener);
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  /** Rebuilds the snapshot now if a change is pending. */
  flush(): void {
    if (!this.#dirty) return;
    this.#dirty = false;
    const previous = this.#snapshot;
    // A Map iterates in insertion order and ids grow with insertion, but a report re-sets an
    // entry without moving it, so the order stays ascending by id.
    this.#snapshot = createSnapshot(previous.version + 1, [...this.#servers.values()]);
    for (const listener of this.#listeners) listener(this.#snapshot, previous);
  }

  #markDirty(): void {
    if (this.#dirty) return;
    this.#dirty = true;
    queueMicrotask(() => this.flush());
  }
}
