/**
 * The balancer's live server set: membership from discovery, load from reports, published to the
 * pick path as immutable {@linkcode Snapshot}s. A change schedules one rebuild in a microtask, so a
 * burst of reports costs one snapshot and a removed server is out of the picks before the next
 * call; listeners hear of new snapshots on this slow path, never during a pick.
 *
 * @module
 */
import { createSnapshot, type ServerView, type Snapshot } from "../../policies/types.ts";

/** A load report as the set stores it. */
export interface LoadInput {
  cpuLoad: number;
  inFlight: number;
  /** Tasks completed per second over the backend's last interval. @default {0} */
  qps?: number;
  /** Tasks failed per second over the backend's last interval. @default {0} */
  eps?: number;
  /** Tasks waiting for a worker. @default {0} */
  queueLength?: number;
}

/** How long a server's own load report keeps ORCA reports of it from being recorded. */
export const OWN_REPORT_PRECEDENCE_MS = 5_000;

/** Called with every new snapshot. */
export type SnapshotListener = (snapshot: Snapshot, previous: Snapshot) => void;

/** Called, synchronously, when `address` joins (`joined`) or leaves the set. */
export type MembershipListener = (address: string, joined: boolean) => void;

/**
 * The live servers, keyed by address. A member can be ejected (failing its health checks, or
 * not checked yet): it stays a member, keeps its load reports, and is left out of snapshots
 * until it is readmitted.
 */
export class ServerSet {
  #servers = new Map<string, ServerView>();
  #ejected = new Set<string>();
  /** When each server last sent a report of its own (`ReportLoad`). */
  #reportedAtMs = new Map<string, number>();
  #membershipListeners: MembershipListener[] = [];
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

  /** Number of members, ejected ones included. */
  get size(): number {
    return this.#servers.size;
  }

  /** Whether `address` is a member (ejected or not). */
  has(address: string): boolean {
    return this.#servers.has(address);
  }

  /** Whether `address` is a member in the picks (not ejected). */
  isHealthy(address: string): boolean {
    return this.#servers.has(address) && !this.#ejected.has(address);
  }

  /** The ejected members, in the order they became known. */
  ejected(): ServerView[] {
    return [...this.#servers.values()].filter((server) => this.#ejected.has(server.address));
  }

  /**
   * Ejects `address` from the picks (`healthy` false) or readmits it; returns whether anything
   * changed (false for a non-member).
   */
  setHealthy(address: string, healthy: boolean): boolean {
    if (!this.#servers.has(address) || this.#ejected.has(address) !== healthy) return false;
    if (healthy) this.#ejected.delete(address);
    else this.#ejected.add(address);
    this.#markDirty();
    return true;
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
    for (const listener of this.#membershipListeners) listener(address, true);
    return true;
  }

  /** Removes `address`; returns false if it was not live. */
  remove(address: string): boolean {
    if (!this.#servers.delete(address)) return false;
    this.#ejected.delete(address);
    this.#reportedAtMs.delete(address);
    this.#markDirty();
    for (const listener of this.#membershipListeners) listener(address, false);
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
    if (!this.#servers.has(address)) return false;
    this.#reportedAtMs.set(address, reportedAtMs);
    return this.#store(address, input, reportedAtMs);
  }

  /**
   * Records a load report that came as ORCA (in a health check's trailers), unless `address`
   * sent a report of its own ({@linkcode report}) in the last {@linkcode OWN_REPORT_PRECEDENCE_MS}:
   * a backend that reports both ways is followed by its own reports, one that speaks only ORCA
   * (a grpc-go or grpc-java server) by its ORCA. Returns whether it was recorded.
   */
  reportOrca(address: string, input: LoadInput, atMs: number = this.#clock()): boolean {
    const own = this.#reportedAtMs.get(address);
    if (own !== undefined && atMs - own < OWN_REPORT_PRECEDENCE_MS) return false;
    return this.#store(address, input, atMs);
  }

  #store(address: string, input: LoadInput, reportedAtMs: number): boolean {
    const server = this.#servers.get(address);
    if (server === undefined) return false;
    const load = Object.freeze({
      cpuLoad: input.cpuLoad,
      inFlight: input.inFlight,
      reportedAtMs,
      seq: (server.load?.seq ?? -1) + 1,
      qps: input.qps ?? 0,
      eps: input.eps ?? 0,
      queueLength: input.queueLength ?? 0,
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

  /**
   * Registers a listener for joins and leaves, called inside {@linkcode add} and
   * {@linkcode remove} (before the next snapshot); returns a function that removes it.
   */
  onMembership(listener: MembershipListener): () => void {
    this.#membershipListeners.push(listener);
    return () => {
      this.#membershipListeners = this.#membershipListeners.filter((l) => l !== listener);
    };
  }

  /** Rebuilds the snapshot now if a change is pending. */
  flush(): void {
    if (!this.#dirty) return;
    this.#dirty = false;
    const previous = this.#snapshot;
    // A Map iterates in insertion order and ids grow with insertion, but a report re-sets an
    // entry without moving it, so the order stays ascending by id.
    const servers = [...this.#servers.values()];
    this.#snapshot = createSnapshot(
      previous.version + 1,
      this.#ejected.size === 0 ? servers : servers.filter((s) => !this.#ejected.has(s.address)),
    );
    for (const listener of this.#listeners) listener(this.#snapshot, previous);
  }

  #markDirty(): void {
    if (this.#dirty) return;
    this.#dirty = true;
    queueMicrotask(() => this.flush());
  }
}
