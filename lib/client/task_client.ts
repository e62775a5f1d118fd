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
 * Given several balancers, which one to ask is {@linkcode BalancerChoice}'s
 * (`lib/client/balancer_choice.ts`): a `GetServer` that fails in transport (or times out) is
 * retried at once on the next balancer within the same task, and the watch of `--mode watch`
 * resubscribes to the next one, keeping its last set.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { BalancerChoice, type BalancerSource } from "./balancer_choice.ts";
import { failureCause, retriedMessage } from "./failure_cause.ts";
import { type BackendClient, createBackendClient, unary } from "../wire/proto.ts";
import { WatchSubscription } from "./watch_subscription.ts";
import { channelCredentials, type TlsConfig } from "../wire/tls.ts";

export {
  type BalancerSource,
  DEFAULT_RETURN_CHECK_INTERVAL_MS,
  preferredBalancer,
} from "./balancer_choice.ts";

/**
 * Whether a failed call never got a status from the server: UNAVAILABLE, or INTERNAL made up by
 * grpc-js from an HTTP/2 stream reset ("Received RST_STREAM ..."), which is how a server killed
 * between its response headers and its trailers can show up under Deno. Either way the task may
 * or may not have run, as with any retry after a dropped connection; an INTERNAL the server sent
 * itself is not retried.
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
 * Deadline of a `GetServer` call when another balancer is left to ask: a live balancer answers
 * far within it, so one silent this long is taken for gone (a host cut off the network sends no
 * refusal) and the next one is asked. The last one asked gets the full deadline.
 */
export const DEFAULT_FAILOVER_LOOKUP_TIMEOUT_MS = 1_000;

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
    Pick<TaskClientOptions, "maxAttempts" | "lookupTimeoutMs" | "taskTimeoutMs">
  >;
  #credentials: grpc.ChannelCredentials;
  #ids: string[];
  #nextId = 0;
  #watch: WatchSubscription | undefined;
  #direct: string[] | undefined;
  #nextDirect = 0;
  /** Which balancer to ask, and the channels to them. */
  #choice: BalancerChoice;
  /** Balancers that have answered once (asked with waitForReady when alone). */
  #answered = new Set<string>();
  #backends = new Map<string, BackendClient>();

  /** Creates a client; channels open lazily. */
  constructor(options: TaskClientOptions) {
    this.#options = {
      maxAttempts: DEFAULT_MAX_ATTEMPTS,
      lookupTimeoutMs: DEFAULT_LOOKUP_TIMEOUT_MS,
      taskTimeoutMs: DEFAULT_TASK_TIMEOUT_MS,
      ...options,
    };
    this.#direct = options.direct?.length ? options.direct : undefined;
    const ids = options.clientIds ?? 1;
    this.#ids = ids > 1
      ? Array.from({ length: ids }, (_, i) => `${options.clientId}-${i}`)
      : [options.clientId];
    this.#credentials = channelCredentials(options.tls);
    const several = options.balancers !== undefined &&
      (!Array.isArray(options.balancers) || options.balancers.length > 1);
    this.#choice = new BalancerChoice({
      clientId: options.clientId,
      balancer: options.balancer,
      balancers: options.balancers,
      credentials: this.#credentials,
      token: options.token,
      returnChecks: several && !this.#direct,
      returnCheckIntervalMs: options.returnCheckIntervalMs,
      onReturn: () => this.#watch?.resubscribe(),
    });
    if (options.mode === "watch" && !this.#direct) {
      const choice = this.#choice;
      this.#watch = new WatchSubscription({
        clientId: options.clientId,
        balancer: () => {
          const address = choice.choose();
          return { address, client: choice.client(address) };
        },
        failOver: (address) => choice.failOver(address),
        tls: options.tls,
      });
      this.#watch.start();
    }
  }

  /** Times this client moved to another balancer after its own failed. */
  get failovers(): number {
    return this.#choice.failovers;
  }

  /** Times this client moved back to its preferred balancer once that one answered again. */
  get returns(): number {
    return this.#choice.returns;
  }

  /** The balancer in use (`undefined` before the first call). */
  get balancer(): string | undefined {
    return this.#choice.current;
  }

  /** The balancers it knows, in address order. */
  balancers(): string[] {
    return [...this.#choice.list()];
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
      const address = this.#choice.choose();
      const count = this.#choice.list().length;
      const balancer = this.#choice.client(address);
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
          this.#choice.failOver(address);
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
  get watch(): WatchSubscription | undefined {
    return this.#watch;
  }

  /** Closes every channel. */
  close(): void {
    this.#watch?.close();
    this.#choice.close();
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
