/**
 * The client side of the original protocol: ask the balancer for a server, then send the task
 * to it, reusing one channel per server (the original opened two new channels per request).
 *
 * When the call to the named server fails in transport (UNAVAILABLE: it died, or is draining; or
 * its stream was reset before it sent any status, see {@linkcode isTransportFailure}), the client
 * asks the balancer again, naming the servers that failed in `GetServer`'s `avoid` field so it
 * gets another one, and retries, up to `maxAttempts` in all; every status the server itself sent
 * is returned as is, not retried, because retrying a bad request only repeats it. (A balancer of
 * the original system ignores `avoid`; the retry then lands wherever it points.)
 *
 * Given several balancers (a list, or the live ones found in etcd), a client prefers the one its
 * id picks among them, so clients spread over them, and stays there until it fails: a
 * `GetServer` that fails in transport (or times out) is retried at once on the next balancer
 * within the same task, and the watch of `--mode watch` resubscribes to the next one, keeping
 * its last set. While away from its preferred balancer (after a failover, or when the live list
 * changed), a timer checks that one's `grpc.health.v1` once a second over the client's own
 * channel to it, and moves back once it answers SERVING; the pick path does no more than before.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { getLogger } from "@logtape/logtape";
import { withToken } from "../wire/auth.ts";
import { failureCause, retriedMessage } from "./failure_cause.ts";
import { check, createHealthClient, type HealthClient } from "../health/grpc_health.ts";
import {
  type BackendClient,
  createBackendClient,
  createLoadBalancerClient,
  type LoadBalancerClient,
  unary,
} from "../wire/proto.ts";
import { ServerWatch } from "./watch_subscription.ts";
import { statusError } from "../wire/status.ts";
import { channelCredentials, type TlsConfig } from "../wire/tls.ts";

const log = getLogger(["lb", "client"]);

/**
 * Whether a failed call never got a status from the server: UNAVAILABLE, or INTERNAL made up by
 * grpc-js from an HTTP/2 stream reset ("Received RST_STREAM ..."), which is how a server killed
 * between its response headers and its trailers shows up under Deno (seen once in fault 5,
 * SIGKILL under load). Either way the task may or may not have run, as with any retry after a
 * dropped connection; an INTERNAL the server sent itself is not retried.
 */
export function isTransportFailure(error: grpc.ServiceError): boolean {
  return error.code === grpc.status.UNAVAILABLE ||
    (error.code === grpc.status.INTERNAL && /^Received RST_STREAM/.test(error.details ?? ""));
}

/** Whether a `GetServer` failed for want of the balancer: worth asking another one. */
function isBalancerFailure(error: grpc.ServiceError): boolean {
  return isTransportFailure(error) || error.code === grpc.status.DEADLINE_EXCEEDED;
}

/**
 * A `GetServer` that failed: its message names the balancer asked last and why (the status
 * message the balancer sent, or the transport's cause); `code` is the call's status, as on the
 * grpc-js error it wraps (`cause`).
 */
export class LookupError extends Error implements grpc.ServiceError {
  override name = "LookupError";
  /** The status of the failed call. */
  code: grpc.status;
  /** The same text as `message`, where grpc-js errors keep theirs. */
  details: string;
  /** The failed call's trailers. */
  metadata: grpc.Metadata;
  /** The balancer asked last. */
  balancer: string;

  /** Wraps `cause`, the error of the call to `balancer`; `reason` says why it failed. */
  constructor(balancer: string, reason: string, cause: grpc.ServiceError) {
    super(`GetServer to balancer ${balancer} failed: ${reason}`, { cause });
    this.code = cause.code;
    this.details = this.message;
    this.metadata = cause.metadata ?? new grpc.Metadata();
    this.balancer = balancer;
  }
}

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

/** Several balancers: a fixed list, or a live one (such as a set kept from etcd). */
export type BalancerSource = readonly string[] | { addresses(): readonly string[] };

/** How a client learns which server to use. */
export type ClientMode = "lookaside" | "watch";
/** Every client mode. */
export const CLIENT_MODES: readonly ClientMode[] = ["lookaside", "watch"];

/** Attempts per task, the first included, when calls to servers fail in transport. */
export const DEFAULT_MAX_ATTEMPTS = 3;
/** Deadline of a `GetServer` call. */
export const DEFAULT_LOOKUP_TIMEOUT_MS = 5_000;
/** Deadline of a `ProcessTask` call. */
export const DEFAULT_TASK_TIMEOUT_MS = 60_000;
/**
 * How often a client away from its preferred balancer checks whether that one answers again
 * (ms); also the deadline of that check.
 */
export const DEFAULT_RETURN_CHECK_INTERVAL_MS = 1_000;

/**
 * Deadline of a `GetServer` call when another balancer is left to ask: a balancer answers in
 * about a millisecond, so one silent this long is taken for gone (a host cut off the network
 * sends no refusal) and the next one is asked. The last one asked gets the full deadline.
 */
export const DEFAULT_FAILOVER_LOOKUP_TIMEOUT_MS = 1_000;

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

/** Options of {@linkcode TaskClient}. */
export interface TaskClientOptions {
  /** Balancer `host:port` (unless `balancers` is given). */
  balancer?: string;
  /**
   * Several balancers to spread over and fail over between, taken in address order; when the
   * source is empty, `balancer` (if given) is used.
   */
  balancers?: BalancerSource;
  /**
   * Backends to use in turn with no balancer at all (the benchmark's `direct` baseline); the
   * balancer is then never called.
   */
  direct?: string[];
  /**
   * `lookaside`: ask `GetServer` before every task (the original protocol). `watch`: subscribe
   * to `WatchServers` and pick locally, falling back to `GetServer` until a set has arrived.
   * @default {"lookaside"}
   */
  mode?: ClientMode;
  clientId: string;
  /**
   * Acts as this many clients, `<clientId>-0` to `<clientId>-<n-1>`, one per task in turn (a
   * load generator standing in for many users, for consistent hashing). 1: just `clientId`.
   * @default {1}
   */
  clientIds?: number;
  /** @default {DEFAULT_MAX_ATTEMPTS} */
  maxAttempts?: number;
  /** @default {DEFAULT_LOOKUP_TIMEOUT_MS} */
  lookupTimeoutMs?: number;
  /** @default {DEFAULT_TASK_TIMEOUT_MS} */
  taskTimeoutMs?: number;
  /** @default {DEFAULT_RETURN_CHECK_INTERVAL_MS} */
  returnCheckIntervalMs?: number;
  /** TLS to the balancer and the backends. @default {plaintext} */
  tls?: TlsConfig;
  /** Control-plane token, sent to the balancer only (`GetServer`, `WatchServers`). */
  token?: string;
}

/**
 * Outcome of one task. A failure's `message` is the cause of its last attempt (the server's
 * status message, or what the transport saw), after `after <n> attempts (<servers>): ` when it
 * was retried; `server` is the one its last attempt went to (none when `GetServer` failed).
 */
export type TaskOutcome =
  | { ok: true; server: string; result: string; attempts: number }
  | { ok: false; server: string | undefined; code: number; message: string; attempts: number };

/** Sends tasks through the balancer. */
export class TaskClient {
  #options: Required<
    Omit<
      TaskClientOptions,
      "direct" | "mode" | "clientIds" | "tls" | "token" | "balancer" | "balancers"
    >
  >;
  /** The balancers, in address order. */
  #list: () => readonly string[];
  #token: string | undefined;
  #credentials: grpc.ChannelCredentials;
  #ids: string[];
  #nextId = 0;
  #watch: ServerWatch | undefined;
  #direct: string[] | undefined;
  #nextDirect = 0;
  /** Channels to the balancers, by address, opened lazily. */
  #balancers = new Map<string, LoadBalancerClient>();
  /** The balancer in use; the next one after it fails. */
  #current: string | undefined;
  /** Balancers that have answered once (asked with waitForReady when alone). */
  #answered = new Set<string>();
  #failovers = 0;
  #returns = 0;
  /** Health clients sharing the balancer channels, for the checks before moving back. */
  #health = new Map<string, HealthClient>();
  /** Checks, while away from the preferred balancer, whether it answers again. */
  #returnTimer: ReturnType<typeof setInterval> | undefined;
  #checking = false;
  #backends = new Map<string, BackendClient>();

  /** Creates a client; channels open lazily. */
  constructor(options: TaskClientOptions) {
    this.#options = {
      maxAttempts: DEFAULT_MAX_ATTEMPTS,
      lookupTimeoutMs: DEFAULT_LOOKUP_TIMEOUT_MS,
      taskTimeoutMs: DEFAULT_TASK_TIMEOUT_MS,
      returnCheckIntervalMs: DEFAULT_RETURN_CHECK_INTERVAL_MS,
      ...options,
    };
    this.#direct = options.direct?.length ? options.direct : undefined;
    const ids = options.clientIds ?? 1;
    this.#ids = ids > 1
      ? Array.from({ length: ids }, (_, i) => `${options.clientId}-${i}`)
      : [options.clientId];
    this.#credentials = channelCredentials(options.tls);
    this.#token = options.token;
    const fallback = options.balancer === undefined ? [] : [options.balancer];
    this.#list = sortedList(options.balancers, fallback);
    const several = options.balancers !== undefined &&
      (!Array.isArray(options.balancers) || options.balancers.length > 1);
    if (several && !this.#direct) {
      this.#returnTimer = setInterval(
        () => this.#checkReturn(),
        this.#options.returnCheckIntervalMs,
      );
      Deno.unrefTimer(this.#returnTimer);
    }
    if (options.mode === "watch" && !this.#direct) {
      this.#watch = new ServerWatch({
        clientId: options.clientId,
        balancer: () => {
          const address = this.#currentBalancer();
          return { address, client: this.#balancerClient(address) };
        },
        failOver: (address) => this.#failOver(address),
      });
      this.#watch.start();
    }
  }

  /** Times this client moved to another balancer after its own failed. */
  get failovers(): number {
    return this.#failovers;
  }

  /** Times this client moved back to its preferred balancer once that one answered again. */
  get returns(): number {
    return this.#returns;
  }

  /** The balancer in use (`undefined` before the first call). */
  get balancer(): string | undefined {
    return this.#current;
  }

  /** The balancers it knows, in address order. */
  balancers(): string[] {
    return [...this.#list()];
  }

  /** The balancer in use, the preferred one at first (throws UNAVAILABLE if none). */
  #currentBalancer(): string {
    const list = this.#list();
    if (list.length === 0) throw statusError(grpc.status.UNAVAILABLE, "No live balancer is known");
    if (this.#current === undefined || !list.includes(this.#current)) {
      this.#current = this.#preferred(list);
    }
    return this.#current!;
  }

  /** The balancer this client's id picks among `list`: where it goes back to. */
  #preferred(list: readonly string[]): string | undefined {
    return preferredBalancer(this.#options.clientId, list);
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
      const timeoutMs = this.#options.returnCheckIntervalMs;
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
      this.#watch?.resubscribe();
    } finally {
      this.#checking = false;
    }
  }

  /** A health client over the channel to the balancer `address` (shared, not its own). */
  #healthClient(address: string): HealthClient {
    let client = this.#health.get(address);
    if (!client) {
      const channel = this.#balancerClient(address).getChannel();
      client = createHealthClient(address, this.#credentials, { channelOverride: channel });
      this.#health.set(address, client);
    }
    return client;
  }

  /**
   * Moves on from the balancer `failed` to the next one in address order (once, however many
   * calls saw it fail); returns the number of balancers known.
   */
  #failOver(failed: string): number {
    const list = this.#list();
    if (list.length > 1 && this.#current === failed) {
      this.#current = list[(list.indexOf(failed) + 1) % list.length];
      this.#failovers++;
      log.warn("Balancer {failed} failed; moving to {next}", { failed, next: this.#current });
    }
    return list.length;
  }

  #balancerClient(address: string): LoadBalancerClient {
    let client = this.#balancers.get(address);
    if (!client) {
      client = createLoadBalancerClient(
        address,
        this.#credentials,
        undefined,
        withToken({ ...BALANCER_CHANNEL_OPTIONS }, this.#token),
      );
      this.#balancers.set(address, client);
    }
    return client;
  }

  /**
   * Asks the balancer for a server, other than those in `avoid` if it has one (or takes the next
   * direct backend).
   */
  getServer(avoid: string[] = [], clientId: string = this.#ids[0]): Promise<string> {
    if (this.#direct) {
      for (let i = 0; i < this.#direct.length; i++) {
        const address = this.#direct[this.#nextDirect];
        this.#nextDirect = (this.#nextDirect + 1) % this.#direct.length;
        if (!avoid.includes(address) || i === this.#direct.length - 1) {
          return Promise.resolve(address);
        }
      }
    }
    if (this.#watch?.ready) {
      const result = this.#watch.pick(clientId, avoid);
      if (result.kind === "pick") return Promise.resolve(result.server.address);
    }
    return this.#lookup(clientId, avoid);
  }

  /** `GetServer`, moving on to the next balancer (within this call) when one fails. */
  async #lookup(clientId: string, avoid: string[]): Promise<string> {
    for (let tried = 1;; tried++) {
      const address = this.#currentBalancer();
      const count = this.#list().length;
      const balancer = this.#balancerClient(address);
      try {
        // A lone balancer, once it has answered, is the one place to ask: wait for its
        // connection (within the deadline) rather than fail at once while the channel sits in
        // reconnect backoff, so a restart costs latency, not failed tasks. Before its first
        // answer, fail fast: a wrong address or a TLS mismatch is reported at once, with its
        // cause. With several balancers, fail fast and ask the next one. Backends are always
        // called fail-fast: there is another one.
        const response = await unary(balancer.GetServer, balancer, {
          client_id: clientId,
          avoid,
        }, {
          deadline: Date.now() +
            (tried < count
              ? Math.min(DEFAULT_FAILOVER_LOOKUP_TIMEOUT_MS, this.#options.lookupTimeoutMs)
              : this.#options.lookupTimeoutMs),
          waitForReady: count === 1 && this.#answered.has(address),
        });
        this.#answered.add(address);
        return response.server_address;
      } catch (error) {
        const e = error as grpc.ServiceError;
        if (tried < count && isBalancerFailure(e)) {
          this.#failOver(address);
          continue;
        }
        const reason = await failureCause(e, balancer);
        throw new LookupError(
          address,
          tried > 1 ? `${reason} (${tried} balancers tried)` : reason,
          e,
        );
      }
    }
  }

  /** Runs one task: lookup, then `ProcessTask`, retrying on a transport failure. */
  async run(taskId: string, taskType: string): Promise<TaskOutcome> {
    let server: string | undefined;
    let last: { error: grpc.ServiceError; backend: BackendClient } | undefined;
    let attempt = 0;
    const failedOn: string[] = [];
    const tried: string[] = [];
    const clientId = this.#ids[this.#nextId];
    this.#nextId = (this.#nextId + 1) % this.#ids.length;
    while (attempt < this.#options.maxAttempts) {
      attempt++;
      try {
        server = await this.getServer(failedOn, clientId);
      } catch (error) {
        const e = error as grpc.ServiceError;
        const message = retriedMessage(attempt, tried, e.details || e.message);
        return { ok: false, server: undefined, code: e.code, message, attempts: attempt };
      }
      tried.push(server);
      const backend = this.#backend(server);
      try {
        const response = await unary(backend.ProcessTask, backend, {
          task_id: taskId,
          task_type: taskType,
        }, { deadline: Date.now() + this.#options.taskTimeoutMs });
        return { ok: true, server, result: response.result, attempts: attempt };
      } catch (error) {
        last = { error: error as grpc.ServiceError, backend };
        if (!isTransportFailure(last.error)) break;
        this.#forget(server);
        // The next GetServer names the failed servers in `avoid`, so the balancer picks another.
        failedOn.push(server);
      }
    }
    // Explained once the task has failed, not on every attempt: a retry that succeeds needs none.
    const cause = last ? await failureCause(last.error, last.backend) : "unknown error";
    return {
      ok: false,
      server,
      code: last?.error.code ?? grpc.status.UNKNOWN,
      message: retriedMessage(attempt, tried, cause),
      attempts: attempt,
    };
  }

  /** The local server watch, in `watch` mode. */
  get watch(): ServerWatch | undefined {
    return this.#watch;
  }

  /** Closes every channel. */
  close(): void {
    clearInterval(this.#returnTimer);
    this.#returnTimer = undefined;
    this.#watch?.close();
    // The health clients share the balancer channels, closed here.
    this.#health.clear();
    for (const client of this.#balancers.values()) client.close();
    this.#balancers.clear();
    for (const client of this.#backends.values()) client.close();
    this.#backends.clear();
  }

  /** Drops the channel to a server that failed, so a dead server's channel does not linger. */
  #forget(address: string): void {
    this.#backends.get(address)?.close();
    this.#backends.delete(address);
  }

  #backend(address: string): BackendClient {
    let client = this.#backends.get(address);
    if (!client) {
      client = createBackendClient(address, this.#credentials);
      this.#backends.set(address, client);
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
