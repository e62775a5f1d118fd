/**
 * The client's side of `WatchServers` (`client --mode watch`): a local copy of the balancer's
 * server set with loads, picked from with the balancer's own policy functions, so a task costs one
 * RPC instead of two. Through a broken stream, or an update with no server (most often from a
 * balancer that has just started), it keeps its last set: a stale set fails over by retries, an
 * empty one fails every task. Until it has a set, or against a balancer without `WatchServers`,
 * the caller falls back to `GetServer`.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { getLogger } from "@logtape/logtape";
import { createPolicy, isPolicyName } from "../../policies/mod.ts";
import type { PickResult } from "../../policies/types.ts";
import { retryDelayMs } from "../wire/backoff.ts";
import { Picker } from "../picking/picker.ts";
import type { LoadBalancerClient, ServerList } from "../wire/proto.ts";
import { ServerSet } from "../picking/server_set.ts";
import { LoadProber } from "../picking/load_prober.ts";
import type { TlsConfig } from "../wire/tls.ts";
import { ServerProbes } from "./server_probes.ts";

const log = getLogger(["lb", "watch"]);

/** Options of {@linkcode WatchSubscription}. */
export interface WatchSubscriptionOptions {
  /** The balancer to subscribe to, asked at every (re)subscription. */
  balancer: () => { address: string; client: LoadBalancerClient };
  /**
   * Called when the stream to `address` broke: moves `balancer()` on to the next balancer, and
   * returns how many there are. @default {() => 1}
   */
  failOver?: (address: string) => number;
  clientId: string;
  /** @default {performance.now} */
  clock?: () => number;
  /** @default {Math.random} */
  rng?: () => number;
  /** TLS of the backends' ports, for the client's own probes under `prequal`; none: plaintext. */
  tls?: TlsConfig;
}

/** A local, continuously updated copy of the balancer's server set. */
export class WatchSubscription {
  #options: WatchSubscriptionOptions;
  #clock: () => number;
  #set: ServerSet;
  #picker: Picker;
  /** The client's own probes of its servers, for a probing policy (`prequal`). */
  #probes: ServerProbes;
  #prober: LoadProber;
  #seqs = new Map<string, number>();
  #call: grpc.ClientReadableStream<ServerList> | undefined;
  /** The balancer the stream is (or was last) on. */
  #address = "";
  #timer: ReturnType<typeof setTimeout> | undefined;
  #failures = 0;
  #closed = false;
  #unsupported = false;
  #connected = false;

  /** Creates the watch; {@linkcode start} subscribes. */
  constructor(options: WatchSubscriptionOptions) {
    this.#options = options;
    this.#clock = options.clock ?? (() => performance.now());
    this.#set = new ServerSet(this.#clock);
    this.#picker = new Picker(createPolicy("round_robin"), this.#set, this.#clock, options.rng);
    this.#probes = new ServerProbes(this.#set, options.tls);
    this.#prober = new LoadProber({ picker: this.#picker, transport: this.#probes });
  }

  /** Whether local picks can be made (a non-empty set has been received). */
  get ready(): boolean {
    return this.#set.size > 0;
  }

  /** Whether the stream is up. */
  get connected(): boolean {
    return this.#connected;
  }

  /** The policy picks are made with (the balancer's). */
  get policyName(): string {
    return this.#picker.policyName;
  }

  /**
   * Subscribes, and keeps subscribing after every break until {@linkcode close}: at once to each
   * other balancer in turn, then with gRPC's connection backoff.
   */
  start(): void {
    if (this.#closed || this.#unsupported || this.#call) return;
    let balancer: { address: string; client: LoadBalancerClient };
    try {
      balancer = this.#options.balancer();
    } catch (error) {
      // No balancer known yet (a live list still empty): try again later.
      this.#retry((error as Error).message, retryDelayMs(this.#failures++));
      return;
    }
    const call = balancer.client.WatchServers({ client_id: this.#options.clientId });
    this.#address = balancer.address;
    this.#call = call;
    call.on("data", (message: ServerList) => {
      if (!this.#connected) log.debug("Watching servers of the balancer");
      this.#connected = true;
      this.#failures = 0;
      this.#apply(message);
    });
    call.on("error", (error: grpc.ServiceError) => this.#ended(call, error));
    call.on("end", () => this.#ended(call, undefined));
  }

  /** The local servers and their weights under the local policy (slow path, for inspection). */
  servers(): { address: string; weight: number }[] {
    const weights = this.#picker.weights();
    return this.#picker.snapshot.servers.map((s, i) => ({
      address: s.address,
      weight: weights[i],
    }));
  }

  /** Names a server locally (hot path, no I/O). Only meaningful when {@linkcode ready}. */
  pick(clientId: string, avoid?: readonly string[]): PickResult {
    return this.#picker.pick(clientId, avoid);
  }

  /**
   * Moves the subscription to the balancer `balancer()` names now (the client moving back to
   * its preferred one), keeping the set until the new stream sends one.
   */
  resubscribe(): void {
    const call = this.#call;
    if (call === undefined) return; // a retry is pending: it asks `balancer()` anyway
    this.#call = undefined;
    this.#connected = false;
    call.cancel();
    this.start();
  }

  /** Ends the subscription for good. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#call?.cancel();
    this.#call = undefined;
    this.#prober.close();
    this.#probes.close();
    this.#picker.close();
  }

  #ended(call: grpc.ClientReadableStream<ServerList>, error: grpc.ServiceError | undefined): void {
    if (this.#call !== call) return;
    this.#call = undefined;
    this.#connected = false;
    if (this.#closed) return;
    if (error?.code === grpc.status.UNIMPLEMENTED) {
      this.#unsupported = true;
      log.warn("The balancer has no WatchServers (an original one?): using GetServer");
      return;
    }
    const balancers = this.#options.failOver?.(this.#address) ?? 1;
    // Each other balancer is tried at once; after a whole round of failures, back off.
    const others = balancers - 1;
    const delay = this.#failures < others ? 0 : retryDelayMs(this.#failures - others);
    this.#failures++;
    this.#retry(error?.details ?? "stream ended", delay);
  }

  #retry(reason: string, delay: number): void {
    log.warn(
      "Server watch of {balancer} broke ({reason}); keeping the last {count} server(s), " +
        "subscribing again in {delay} ms",
      { balancer: this.#address, reason, count: this.#set.size, delay },
    );
    this.#timer = setTimeout(() => this.start(), delay);
  }

  #apply(message: ServerList): void {
    this.#applyServers(message);
    // After the servers: a new policy's first state must see them (and their ages).
    if (message.policy !== this.#picker.policyName && isPolicyName(message.policy)) {
      this.#picker.setPolicy(createPolicy(message.policy));
    }
  }

  #applyServers(message: ServerList): void {
    if (message.servers.length === 0 && this.#set.size > 0) {
      log.warn("The balancer knows no server yet; keeping the last {count}", {
        count: this.#set.size,
      });
      return;
    }
    const now = this.#clock();
    const wanted = new Set(message.servers.map((s) => s.server_address));
    for (const address of this.#set.addresses()) {
      if (wanted.has(address)) continue;
      this.#set.remove(address);
      this.#seqs.delete(address);
    }
    for (const server of message.servers) {
      this.#set.add(server.server_address, now - server.known_for_ms); // no-op when known
    }
    for (const server of message.servers) {
      if (!server.has_load || this.#seqs.get(server.server_address) === server.report_seq) continue;
      this.#seqs.set(server.server_address, server.report_seq);
      this.#set.report(server.server_address, {
        cpuLoad: server.cpu_load,
        inFlight: server.in_flight,
        qps: server.qps,
        eps: server.eps,
      }, now - server.report_age_ms);
    }
  }
}
