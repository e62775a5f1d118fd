/**
 * The balancer's side of `WatchServers`: each subscriber gets the whole server set (weights and
 * loads) at once, then after each change, at most once per interval, so a missed message loses
 * nothing and the protocol needs no deltas. A message is encoded once (`server_list_encoder.ts`)
 * and the same bytes go to every subscriber, so the garbage per change does not grow with the
 * watchers; a subscriber whose buffer is full is skipped until it drains.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { getLogger } from "@logtape/logtape";
import type { Picker } from "../picking/picker.ts";
import type { ServerList, WatchServersRequest } from "../wire/proto.ts";
import { encodeServerList } from "./server_list_encoder.ts";
import type { ServerSet } from "../picking/server_set.ts";

const log = getLogger(["lb", "watch"]);

/** Shortest time between two messages to a subscriber. */
export const DEFAULT_WATCH_INTERVAL_MS = 100;
/** Most subscribers at once; more are refused with RESOURCE_EXHAUSTED. */
export const DEFAULT_MAX_WATCHERS = 10_000;

type WatchCall = grpc.ServerWritableStream<WatchServersRequest, ServerList>;

/**
 * `service` (the `LoadBalancer` definition) with `WatchServers` writing a `Buffer` as it is: an
 * already encoded `ServerList`, as the hub writes. Other messages are encoded as before.
 */
export function withEncodedWatch(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const watch = service.WatchServers;
  return {
    ...service,
    WatchServers: {
      ...watch,
      responseSerialize: (value: unknown) =>
        Buffer.isBuffer(value) ? value : watch.responseSerialize(value),
    },
  };
}

interface Subscriber {
  call: WatchCall;
  /** The stream's buffer is full: wait for `drain`. */
  blocked: boolean;
  /** A message was skipped while blocked: send the current set on drain. */
  missed: boolean;
}

/** Sends server-set updates to `WatchServers` subscribers. */
export class WatchBroadcast {
  #set: ServerSet;
  #picker: Picker;
  #clock: () => number;
  #intervalMs: number;
  #maxWatchers: number;
  #subscribers = new Set<Subscriber>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastSentAt = -Infinity;
  #version = 0;
  #unsubscribe: () => void;

  /** Creates a hub following `set` and `picker`. */
  constructor(
    set: ServerSet,
    picker: Picker,
    clock: () => number,
    intervalMs = DEFAULT_WATCH_INTERVAL_MS,
    maxWatchers = DEFAULT_MAX_WATCHERS,
  ) {
    this.#set = set;
    this.#picker = picker;
    this.#clock = clock;
    this.#intervalMs = intervalMs;
    this.#maxWatchers = maxWatchers;
    this.#unsubscribe = set.onSnapshot(() => this.changed());
  }

  /** Clients subscribed now. */
  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** The `WatchServers` handler. */
  handle(call: WatchCall, status: typeof grpc.status): void {
    if (this.#subscribers.size >= this.#maxWatchers) {
      call.destroy(
        Object.assign(new Error(`Too many watchers (at most ${this.#maxWatchers})`), {
          code: status.RESOURCE_EXHAUSTED,
        }),
      );
      return;
    }
    const subscriber: Subscriber = { call, blocked: false, missed: false };
    this.#subscribers.add(subscriber);
    const remove = () => this.#subscribers.delete(subscriber);
    call.on("cancelled", remove);
    call.on("close", remove);
    call.on("error", remove);
    call.on("drain", () => {
      subscriber.blocked = false;
      if (subscriber.missed) this.#send(subscriber, this.#encoded());
    });
    log.debug("Watcher {peer} subscribed ({count} now)", {
      peer: call.getPeer(),
      count: this.#subscribers.size,
    });
    this.#set.flush();
    this.#send(subscriber, this.#encoded());
  }

  /** Notes a change; subscribers hear of it within the interval. */
  changed(): void {
    this.#version++;
    if (this.#timer !== undefined || this.#subscribers.size === 0) return;
    const wait = Math.max(0, this.#lastSentAt + this.#intervalMs - this.#clock());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#broadcast();
    }, wait);
  }

  /** Ends every subscription (the balancer is stopping). */
  close(): void {
    clearTimeout(this.#timer);
    this.#unsubscribe();
    for (const subscriber of this.#subscribers) subscriber.call.end();
    this.#subscribers.clear();
  }

  #broadcast(): void {
    this.#lastSentAt = this.#clock();
    const message = this.#encoded();
    for (const subscriber of this.#subscribers) this.#send(subscriber, message);
  }

  #send(subscriber: Subscriber, message: Buffer): void {
    if (subscriber.blocked) {
      subscriber.missed = true;
      return;
    }
    subscriber.missed = false;
    try {
      // An encoded ServerList: the service was added through withEncodedWatch.
      subscriber.blocked = !subscriber.call.write(message as unknown as ServerList);
    } catch {
      this.#subscribers.delete(subscriber);
    }
  }

  #encoded(): Buffer {
    return encodeServerList(this.#message());
  }

  #message(): ServerList {
    const now = this.#clock();
    const snapshot = this.#picker.snapshot;
    const weights = this.#picker.weights();
    return {
      policy: this.#picker.policyName,
      version: this.#version,
      servers: snapshot.servers.map((server, i) => ({
        server_address: server.address,
        weight: weights[i],
        has_load: server.load !== undefined,
        cpu_load: server.load?.cpuLoad ?? 0,
        in_flight: server.load?.inFlight ?? 0,
        qps: server.load?.qps ?? 0,
        eps: server.load?.eps ?? 0,
        report_age_ms: server.load ? Math.max(0, Math.round(now - server.load.reportedAtMs)) : 0,
        known_for_ms: Math.max(0, Math.round(now - server.addedAtMs)),
        report_seq: server.load?.seq ?? 0,
      })),
    };
  }
}
