/**
 * The balancer's view of etcd: lists the servers under a prefix, then follows it with one watch,
 * keeping a {@linkcode ServerSet} equal to the valid entries. While etcd is unreachable the set is
 * left as it is, so the balancer serves its last known servers; the watch resumes from the last
 * revision seen, and if etcd compacted that revision the prefix is listed again.
 *
 * @module
 */
import type { Etcd3, IKeyValue, IWatchResponse, Watcher } from "etcd3";
import { getLogger } from "@logtape/logtape";
import type { ServerSet } from "../picking/server_set.ts";
import { type BackoffOptions, retryDelayMs, sleep } from "../wire/backoff.ts";
import { parseServerValue } from "./etcd_layout.ts";
import type { BalancerMetrics } from "../ops/metrics.ts";

const log = getLogger(["lb", "etcd"]);

/** How long {@linkcode EtcdDiscovery.start} waits for the first list by default (ms). */
export const DEFAULT_DISCOVERY_START_TIMEOUT_MS = 5_000;

/** Bound on cancelling the watch in {@linkcode EtcdDiscovery.stop} (ms). */
const CANCEL_TIMEOUT_MS = 2_000;

/** Options of {@linkcode EtcdDiscovery}. */
export interface EtcdDiscoveryOptions {
  /** Client to read and watch with; the caller closes it after {@linkcode EtcdDiscovery.stop}. */
  client: Etcd3;
  /** Key prefix, such as `/servers/`. */
  prefix: string;
  /** The set to keep in step with etcd. */
  set: ServerSet;
  /**
   * How long {@linkcode EtcdDiscovery.start} waits for the first list (ms) before it resolves
   * `false` and lets the discovery keep retrying in the background.
   * @default {DEFAULT_DISCOVERY_START_TIMEOUT_MS}
   */
  startTimeoutMs?: number;
  /**
   * Retry schedule of the list while etcd is unreachable.
   * @default {{ initialMs: 1_000, multiplier: 1.6, jitter: 0.2, maxMs: 30_000 }}
   */
  backoff?: BackoffOptions;
  /** Where watch reconnects are counted; none: not counted. */
  metrics?: Pick<BalancerMetrics, "etcdWatchReconnects">;
}

/** Keeps a {@linkcode ServerSet} equal to the servers registered under an etcd prefix. */
export class EtcdDiscovery {
  #client: Etcd3;
  #prefix: string;
  #set: ServerSet;
  #startTimeoutMs: number;
  #backoff: BackoffOptions;
  /** Valid entries, key -> address: a delete event carries only the key. */
  #entries = new Map<string, string>();
  #revision = 0;
  #connected = false;
  /** Set while the watch is down after having been up, so its return is logged once. */
  #outage = false;
  #synced = false;
  #lists = 0;
  #watcher: Watcher | undefined;
  /** Watches cancelled by etcd in a row without an event in between, to back off a bad loop. */
  #watchFailures = 0;
  #stopping = new AbortController();
  #loop: Promise<void> | undefined;
  #onFirstSync: (() => void) | undefined;
  #metrics: EtcdDiscoveryOptions["metrics"];

  /** Creates the discovery; nothing is read before {@linkcode start}. */
  constructor(options: EtcdDiscoveryOptions) {
    this.#client = options.client;
    this.#prefix = options.prefix;
    this.#set = options.set;
    this.#startTimeoutMs = options.startTimeoutMs ?? DEFAULT_DISCOVERY_START_TIMEOUT_MS;
    this.#backoff = options.backoff ?? {};
    this.#metrics = options.metrics;
  }

  /** Whether the watch is attached to etcd. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Whether a list has been applied to the set at least once. */
  get synced(): boolean {
    return this.#synced;
  }

  /** Last etcd revision applied to the set (0 before the first list). */
  get revision(): number {
    return this.#revision;
  }

  /** Lists of the whole prefix done: 1 after start, one more per cancelled (compacted) watch. */
  get lists(): number {
    return this.#lists;
  }

  /**
   * Lists the prefix into the set, then watches it. Resolves `true` once the first list is
   * applied, or `false` if that did not happen within `startTimeoutMs` (etcd unreachable): the
   * discovery then keeps retrying in the background, and the set stays as it was meanwhile.
   */
  async start(): Promise<boolean> {
    if (this.#loop !== undefined) throw new Error(`Discovery of '${this.#prefix}' already started`);
    const firstSync = new Promise<void>((resolve) => this.#onFirstSync = resolve);
    this.#loop = this.#sync();
    const timeout = new AbortController();
    await Promise.race([firstSync, sleep(this.#startTimeoutMs, timeout.signal)]);
    timeout.abort();
    if (!this.#synced && !this.#stopping.signal.aborted) {
      log.warn(
        "No etcd list of {prefix} after {timeoutMs} ms; serving the last known set of {size} servers while retrying",
        { prefix: this.#prefix, timeoutMs: this.#startTimeoutMs, size: this.#set.size },
      );
    }
    return this.#synced;
  }

  /**
   * Cancels the watch and stops retrying; the set is left as it is. The caller closes the client
   * afterwards (closing it first would leave etcd3 reconnecting the watch forever).
   */
  async stop(): Promise<void> {
    if (this.#stopping.signal.aborted) return;
    this.#stopping.abort();
    this.#onFirstSync?.();
    await this.#cancelWatch();
    await this.#loop;
    this.#connected = false;
  }

  /** Lists the prefix and watches it from the next revision, retrying until it works. */
  async #sync(): Promise<void> {
    const signal = this.#stopping.signal;
    if (this.#watchFailures > 1) {
      await sleep(retryDelayMs(this.#watchFailures - 2, this.#backoff), signal);
    }
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        const response = await this.#client.getAll().prefix(this.#prefix).exec();
        if (signal.aborted) return;
        this.#applyList(response.kvs, Number(response.header.revision));
        if (attempt > 0) log.info("etcd is reachable again; listed {prefix}", this.#fields());
        this.#watch();
        this.#onFirstSync?.();
        this.#onFirstSync = undefined;
        return;
      } catch (error) {
        const delayMs = retryDelayMs(attempt, this.#backoff);
        const fields = { ...this.#fields(), error, delayMs };
        if (attempt === 0) {
          log.warn(
            "Could not list {prefix} in etcd; serving the last known set of {size} servers, retrying in {delayMs} ms: {error}",
            fields,
          );
        } else {
          log.debug("Could not list {prefix}, retrying in {delayMs} ms: {error}", fields);
        }
        await sleep(delayMs, signal);
      }
    }
  }

  #applyList(kvs: IKeyValue[], revision: number): void {
    this.#entries.clear();
    for (const kv of kvs) {
      const address = this.#read(kv);
      if (address !== undefined) this.#entries.set(kv.key.toString(), address);
    }
    const { added, removed } = this.#set.replaceAll(new Set(this.#entries.values()));
    this.#revision = revision;
    this.#synced = true;
    this.#lists++;
    log.info("Listed {size} servers under {prefix} at revision {revision}", {
      ...this.#fields(),
      added,
      removed,
    });
  }

  #watch(): void {
    // watcher() rather than create(): it hands the watcher over at once, so stop() can cancel
    // it even while etcd is down and create() would still be waiting for the first `connected`.
    const watcher = this.#client.watch().prefix(this.#prefix)
      .startRevision(String(this.#revision + 1)).watcher();
    this.#watcher = watcher;
    watcher.on("connected", () => this.#onConnected(watcher));
    watcher.on("disconnected", (error) => this.#onDisconnected(watcher, error));
    watcher.on("data", (response) => this.#onData(watcher, response));
    watcher.on("error", (error) => this.#onWatchError(watcher, error));
  }

  #onConnected(watcher: Watcher): void {
    if (watcher !== this.#watcher) return;
    // etcd3 moves its resume point to the create response's header revision, past events that
    // etcd has yet to send for this watch; resume from what was applied instead.
    this.#resumeFrom(watcher);
    if (this.#connected) return;
    this.#connected = true;
    // Every connect but the first is a reconnect: after an outage, or a relist (a cancelled watch).
    if (this.#outage || this.#lists > 1) this.#metrics?.etcdWatchReconnects.inc();
    if (this.#outage) {
      this.#outage = false;
      log.info(
        "The etcd watch of {prefix} is back; resuming after revision {revision}",
        this.#fields(),
      );
    } else {
      log.info("Watching {prefix} in etcd after revision {revision}", this.#fields());
    }
  }

  #onDisconnected(watcher: Watcher, error: unknown): void {
    if (watcher !== this.#watcher || !this.#connected) return;
    this.#connected = false;
    this.#outage = true;
    log.warn(
      "Lost the etcd watch of {prefix}; serving the last known set of {size} servers until it is back: {error}",
      { ...this.#fields(), error },
    );
  }

  #onData(watcher: Watcher, response: IWatchResponse): void {
    if (watcher !== this.#watcher) return;
    let revision = this.#revision;
    for (const event of response.events) {
      if (event.type === "Put") this.#applyPut(event.kv);
      else this.#applyDelete(event.kv);
      revision = Math.max(revision, Number(event.kv.mod_revision));
    }
    // A response without events is a progress notification: everything up to its header
    // revision has been sent.
    if (response.events.length === 0) {
      revision = Math.max(revision, Number(response.header.revision));
    }
    this.#revision = revision;
    this.#watchFailures = 0;
    this.#resumeFrom(watcher);
  }

  #onWatchError(watcher: Watcher, error: unknown): void {
    if (watcher !== this.#watcher || this.#stopping.signal.aborted) return;
    // etcd cancelled the watch, most often because its revision was compacted; etcd3 has
    // dropped the watcher for good, so list again and watch from the new revision.
    this.#watcher = undefined;
    this.#connected = false;
    this.#watchFailures++;
    log.warn(
      "etcd cancelled the watch of {prefix} at revision {revision}; listing again: {error}",
      {
        ...this.#fields(),
        error,
      },
    );
    this.#loop = this.#sync();
  }

  /** The address `kv` names, or `undefined` (with a warning) if its value is not valid. */
  #read(kv: IKeyValue): string | undefined {
    const key = kv.key.toString();
    const parsed = parseServerValue(key, kv.value.toString(), this.#prefix);
    if (parsed.ok) return parsed.address;
    log.warn("Skipped etcd key {key}: {reason}", { key, reason: parsed.reason });
    return undefined;
  }

  #applyPut(kv: IKeyValue): void {
    const key = kv.key.toString();
    const address = this.#read(kv);
    const previous = this.#entries.get(key);
    if (address === previous) return;
    // A key that named another server, or named one and no longer parses, lets it go.
    if (previous !== undefined) this.#applyDelete(kv);
    if (address === undefined) return;
    this.#entries.set(key, address);
    if (this.#set.add(address)) log.info("Server {address} joined ({key})", { address, key });
  }

  #applyDelete(kv: IKeyValue): void {
    const key = kv.key.toString();
    const address = this.#entries.get(key);
    if (address === undefined) return;
    this.#entries.delete(key);
    // Two keys may name the same server; it stays while one of them does.
    for (const other of this.#entries.values()) if (other === address) return;
    if (this.#set.remove(address)) log.info("Server {address} left ({key})", { address, key });
  }

  #resumeFrom(watcher: Watcher): void {
    watcher.request.start_revision = String(this.#revision + 1);
  }

  async #cancelWatch(): Promise<void> {
    const watcher = this.#watcher;
    this.#watcher = undefined;
    if (watcher === undefined) return;
    const timeout = new AbortController();
    try {
      // cancel() waits for etcd's answer, which may not come while etcd is down; the watcher is
      // dropped anyway when etcd3 reconnects the stream.
      await Promise.race([watcher.cancel(), sleep(CANCEL_TIMEOUT_MS, timeout.signal)]);
    } catch (error) {
      log.debug("Could not cancel the etcd watch of {prefix}: {error}", {
        ...this.#fields(),
        error,
      });
    } finally {
      timeout.abort();
    }
  }

  #fields(): { prefix: string; revision: number; size: number } {
    return { prefix: this.#prefix, revision: this.#revision, size: this.#set.size };
  }
}
