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
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { withToken } from "./auth.ts";
import {
  type BackendClient,
  createBackendClient,
  createLoadBalancerClient,
  type LoadBalancerClient,
  unary,
} from "./proto.ts";
import { ServerWatch } from "./server_watch.ts";
import { channelCredentials, type TlsConfig } from "./tls.ts";

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

/** Options of {@linkcode TaskClient}. */
export interface TaskClientOptions {
  /** Balancer `host:port`. */
  balancer: string;
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
  /** TLS to the balancer and the backends. @default {plaintext} */
  tls?: TlsConfig;
  /** Control-plane token, sent to the balancer only (`GetServer`, `WatchServers`). */
  token?: string;
}

/** Outcome of one task. */
export type TaskOutcome =
  | { ok: true; server: string; result: string; attempts: number }
  | { ok: false; server: string | undefined; code: number; message: string; attempts: number };

/** Sends tasks through the balancer. */
export class TaskClient {
  #options: Required<
    Omit<TaskClientOptions, "direct" | "mode" | "clientIds" | "tls" | "token">
  >;
  #credentials: grpc.ChannelCredentials;
  #ids: string[];
  #nextId = 0;
  #watch: ServerWatch | undefined;
  #direct: string[] | undefined;
  #nextDirect = 0;
  #balancer: LoadBalancerClient;
  #balancerAnswered = false;
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
    this.#balancer = createLoadBalancerClient(
      options.balancer,
      this.#credentials,
      undefined,
      withToken({}, options.token),
    );
    if (options.mode === "watch" && !this.#direct) {
      this.#watch = new ServerWatch({ balancer: this.#balancer, clientId: options.clientId });
      this.#watch.start();
    }
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
    // Once the balancer has answered, it is the one place to ask: wait for its connection
    // (within the deadline) rather than fail at once while the channel sits in reconnect backoff,
    // so a balancer restart costs latency, not failed tasks. Before its first answer, fail fast:
    // a wrong address or a TLS mismatch is reported at once, with its cause. Backends are
    // always called fail-fast: there is another one.
    return unary(this.#balancer.GetServer, this.#balancer, {
      client_id: clientId,
      avoid,
    }, {
      deadline: Date.now() + this.#options.lookupTimeoutMs,
      waitForReady: this.#balancerAnswered,
    }).then((r) => {
      this.#balancerAnswered = true;
      return r.server_address;
    });
  }

  /** Runs one task: lookup, then `ProcessTask`, retrying on a transport failure. */
  async run(taskId: string, taskType: string): Promise<TaskOutcome> {
    let server: string | undefined;
    let last: grpc.ServiceError | undefined;
    let attempt = 0;
    const failedOn: string[] = [];
    const clientId = this.#ids[this.#nextId];
    this.#nextId = (this.#nextId + 1) % this.#ids.length;
    while (attempt < this.#options.maxAttempts) {
      attempt++;
      try {
        server = await this.getServer(failedOn, clientId);
      } catch (error) {
        const e = error as grpc.ServiceError;
        return {
          ok: false,
          server: undefined,
          code: e.code,
          message: e.details ?? e.message,
          attempts: attempt,
        };
      }
      try {
        const backend = this.#backend(server);
        const response = await unary(backend.ProcessTask, backend, {
          task_id: taskId,
          task_type: taskType,
        }, { deadline: Date.now() + this.#options.taskTimeoutMs });
        return { ok: true, server, result: response.result, attempts: attempt };
      } catch (error) {
        last = error as grpc.ServiceError;
        if (!isTransportFailure(last)) break;
        this.#forget(server);
        // The next GetServer names the failed servers in `avoid`, so the balancer picks another.
        failedOn.push(server);
      }
    }
    return {
      ok: false,
      server,
      code: last?.code ?? grpc.status.UNKNOWN,
      message: last?.details ?? last?.message ?? "unknown error",
      attempts: attempt,
    };
  }

  /** The local server watch, in `watch` mode. */
  get watch(): ServerWatch | undefined {
    return this.#watch;
  }

  /** Closes every channel. */
  close(): void {
    this.#watch?.close();
    this.#balancer.close();
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
