/**
 * Which balancer a client asks, given several (a list, or the live ones found in etcd): it
 * prefers the one its id picks among them ({@linkcode preferredBalancer}), so clients spread over
 * them, and stays there until it fails. A `GetServer` that fails in transport (or times out) moves
 * it on to the next balancer in address order ({@linkcode BalancerChoice.failOver}), and so does a
 * broken watch of `--mode watch`. While away from its preferred balancer (after a failover, or
 * when the live list changed), a timer checks that one's `grpc.health.v1` once a second over the
 * client's own channel to it, and moves back once it answers SERVING; the pick path does no more
 * than before.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { getLogger } from "@logtape/logtape";
import { withToken } from "../wire/auth.ts";
import { check, createHealthClient, type HealthClient } from "../wire/grpc_health.ts";
import { createLoadBalancerClient, type LoadBalancerClient } from "../wire/proto.ts";
import { statusError } from "../wire/status.ts";

const log = getLogger(["lb", "client"]);

/** Several balancers: a fixed list, or a live one (such as a set kept from etcd). */
export type BalancerSource = readonly string[] | { addresses(): readonly string[] };

/**
 * How often a client away from its preferred balancer checks whether that one answers again
 * (ms); also the deadline of that check.
 */
export const DEFAULT_RETURN_CHECK_INTERVAL_MS = 1_000;

/**
 * Channel options of the balancer channels: gRPC's connection backoff (1 s, ×1.6), capped at 2 s
 * instead of 120 s, so a balancer that comes back is reconnected to (and moved back to) soon;
 * and keepalive pings while a call is open, so a `WatchServers` stream to a balancer whose host
 * went silent (no refusal, no reset) fails within `time + timeout` and moves to the next one.
 */
const BALANCER_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.initial_reconnect_backoff_ms": 1_000,
  "grpc.max_reconnect_backoff_ms": 2_000,
  "grpc.keepalive_time_ms": 2_000,
  "grpc.keepalive_timeout_ms": 1_000,
};

/**
 * The balancer among `balancers` that `clientId` prefers: rendezvous (highest random weight)
 * hashing, the one whose FNV-1a of `clientId` and its address is highest. Clients spread evenly,
 * and when a balancer joins or leaves only the clients that prefer it (now, or before) move:
 * with `hash % count`, most clients would change balancer on any change of the list.
 */
export function preferredBalancer(
  clientId: string,
  balancers: readonly string[],
): string | undefined {
  let best: string | undefined;
  let bestWeight = -1;
  for (const address of balancers) {
    const weight = fnv1a(address, fnv1a(clientId, 0x811c9dc5));
    if (weight > bestWeight || (weight === bestWeight && address < best!)) {
      best = address;
      bestWeight = weight;
    }
  }
  return best;
}

/** FNV-1a (32 bits) of `text`, continuing from `hash`, finished with a murmur3 mix. */
function fnv1a(text: string, hash: number): number {
  for (let i = 0; i < text.length; i++) {
    hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  }
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) >>> 0;
}

/** Options of {@linkcode BalancerChoice}. */
export interface BalancerChoiceOptions {
  /** The id whose preferred balancer is chosen first, and moved back to. */
  clientId: string;
  /** Balancer `host:port`, used while `balancers` is absent or empty. */
  balancer?: string;
  /** Several balancers, taken in address order. */
  balancers?: BalancerSource;
  /** Credentials of the balancer channels. */
  credentials: grpc.ChannelCredentials;
  /** Control-plane token, sent on the balancer channels. */
  token?: string;
  /**
   * Whether to check, while away from the preferred balancer, whether it answers again, and
   * move back to it. @default {false}
   */
  returnChecks?: boolean;
  /** @default {DEFAULT_RETURN_CHECK_INTERVAL_MS} */
  returnCheckIntervalMs?: number;
  /** Called after moving back to the preferred balancer (a watch resubscribes there). */
  onReturn?: () => void;
}

/** The balancer a client asks, among several, and the channels to them. */
export class BalancerChoice {
  #clientId: string;
  /** The balancers, in address order. */
  #list: () => readonly string[];
  #credentials: grpc.ChannelCredentials;
  #token: string | undefined;
  #returnCheckIntervalMs: number;
  #onReturn: () => void;
  /** Channels to the balancers, by address, opened lazily. */
  #clients = new Map<string, LoadBalancerClient>();
  /** The balancer in use; the next one after it fails. */
  #current: string | undefined;
  #failovers = 0;
  #returns = 0;
  /** Health clients sharing the balancer channels, for the checks before moving back. */
  #health = new Map<string, HealthClient>();
  /** Checks, while away from the preferred balancer, whether it answers again. */
  #returnTimer: ReturnType<typeof setInterval> | undefined;
  #checking = false;

  /** Creates the choice; channels open lazily, and the return timer starts at once. */
  constructor(options: BalancerChoiceOptions) {
    this.#clientId = options.clientId;
    this.#credentials = options.credentials;
    this.#token = options.token;
    this.#returnCheckIntervalMs = options.returnCheckIntervalMs ??
      DEFAULT_RETURN_CHECK_INTERVAL_MS;
    this.#onReturn = options.onReturn ?? (() => {});
    const fallback = options.balancer === undefined ? [] : [options.balancer];
    this.#list = sortedList(options.balancers, fallback);
    if (options.returnChecks) {
      this.#returnTimer = setInterval(() => this.#checkReturn(), this.#returnCheckIntervalMs);
      Deno.unrefTimer(this.#returnTimer);
    }
  }

  /** Times it moved to another balancer after its own failed. */
  get failovers(): number {
    return this.#failovers;
  }

  /** Times it moved back to the preferred balancer once that one answered again. */
  get returns(): number {
    return this.#returns;
  }

  /** The balancer in use (`undefined` before the first {@linkcode choose}). */
  get current(): string | undefined {
    return this.#current;
  }

  /** The balancers it knows, in address order. */
  list(): readonly string[] {
    return this.#list();
  }

  /**
   * The balancer to ask: the one in use, or the preferred one at first and when the one in use
   * left the list (throws UNAVAILABLE if none is known).
   */
  choose(): string {
    const list = this.#list();
    if (list.length === 0) throw statusError(grpc.status.UNAVAILABLE, "No live balancer is known");
    if (this.#current === undefined || !list.includes(this.#current)) {
      this.#current = this.#preferred(list);
    }
    return this.#current!;
  }

  /**
   * Moves on from the balancer `failed` to the next one in address order (once, however many
   * calls saw it fail); returns the number of balancers known.
   */
  failOver(failed: string): number {
    const list = this.#list();
    if (list.length > 1 && this.#current === failed) {
      this.#current = list[(list.indexOf(failed) + 1) % list.length];
      this.#failovers++;
      log.warn("Balancer {failed} failed; moving to {next}", { failed, next: this.#current });
    }
    return list.length;
  }

  /** The channel to the balancer `address`, opened on first use. */
  client(address: string): LoadBalancerClient {
    let client = this.#clients.get(address);
    if (!client) {
      client = createLoadBalancerClient(
        address,
        this.#credentials,
        undefined,
        withToken({ ...BALANCER_CHANNEL_OPTIONS }, this.#token),
      );
      this.#clients.set(address, client);
    }
    return client;
  }

  /** Stops the return timer and closes every balancer channel. */
  close(): void {
    clearInterval(this.#returnTimer);
    this.#returnTimer = undefined;
    // The health clients share the balancer channels, closed here.
    this.#health.clear();
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }

  /** The balancer this client's id picks among `list`: where it goes back to. */
  #preferred(list: readonly string[]): string | undefined {
    return preferredBalancer(this.#clientId, list);
  }

  /**
   * Once a second (the timer): when the balancer in use is not the preferred one, asks the
   * preferred one's health over the client's channel to it, and moves back if it is SERVING (or
   * has no health service: an original balancer that answers). Failing that, it stays.
   */
  async #checkReturn(): Promise<void> {
    const from = this.#current;
    const preferred = this.#preferred(this.#list());
    if (this.#checking || from === undefined || preferred === undefined || preferred === from) {
      return;
    }
    this.#checking = true;
    try {
      const timeoutMs = this.#returnCheckIntervalMs;
      const answers = await check(this.#healthClient(preferred), "", timeoutMs).then(
        (status) => status === "SERVING",
        (error: grpc.ServiceError) => error.code === grpc.status.UNIMPLEMENTED,
      );
      if (!answers || this.#current !== from || this.#returnTimer === undefined) return;
      this.#current = preferred;
      this.#returns++;
      log.info("Balancer {preferred} answers again; moving back to it from {from}", {
        preferred,
        from,
      });
      this.#onReturn();
    } finally {
      this.#checking = false;
    }
  }

  /** A health client over the channel to the balancer `address` (shared, not its own). */
  #healthClient(address: string): HealthClient {
    let client = this.#health.get(address);
    if (!client) {
      const channel = this.client(address).getChannel();
      client = createHealthClient(address, this.#credentials, { channelOverride: channel });
      this.#health.set(address, client);
    }
    return client;
  }
}

/** The balancers of `source` in address order, or `fallback` while it has none. */
function sortedList(
  source: BalancerSource | undefined,
  fallback: readonly string[],
): () => readonly string[] {
  if (source === undefined) return () => fallback;
  if (Array.isArray(source)) {
    const sorted = source.length > 0 ? [...source].sort() : fallback;
    return () => sorted;
  }
  const live = source as { addresses(): readonly string[] };
  return () => {
    const addresses = live.addresses();
    return addresses.length > 0 ? [...addresses].sort() : fallback;
  };
}
