/**
 * The etcd client the balancer and the backends build: call deadlines, keepalive pings, a short
 * watch backoff, and optionally TLS and a username/password. The key layout and value format are
 * in `etcd_layout.ts`, which does not load the etcd3 package.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { Etcd3, type IOptions, isRecoverableError } from "etcd3";
import { type BackoffOptions, retryDelayMs } from "../wire/backoff.ts";
import { channelCredentials, type TlsConfig } from "../wire/tls.ts";

/** Deadline of each unary etcd call (ms), so a call cannot hang while etcd is down. */
export const DEFAULT_ETCD_CALL_TIMEOUT_MS = 5_000;

/**
 * Longest wait between two watch reconnection attempts (ms). etcd3's own grows to 30 s, which
 * would leave the balancer blind that long after etcd comes back.
 */
export const DEFAULT_WATCH_BACKOFF_MAX_MS = 5_000;

/**
 * Interval of HTTP/2 keepalive pings (ms) on connections with open streams, so a watch on a
 * frozen or partitioned etcd is noticed; at least etcd's `--grpc-keepalive-min-time`, or etcd
 * refuses the pings.
 */
export const DEFAULT_ETCD_KEEPALIVE_TIME_MS = 10_000;

/** How long a keepalive ping may go unanswered before the connection is dropped (ms). */
export const DEFAULT_ETCD_KEEPALIVE_TIMEOUT_MS = 5_000;

/** How long a member whose call or stream failed is passed over while another may answer (ms). */
export const DEFAULT_ETCD_HOST_SKIP_MS = 2_000;

/** Options of {@linkcode createEtcdClient}. */
export interface EtcdClientOptions {
  /**
   * Deadline of each unary call (ms); streams get none, as etcd3 reconnects them itself.
   * @default {DEFAULT_ETCD_CALL_TIMEOUT_MS}
   */
  callTimeoutMs?: number;
  /** Longest wait between watch reconnections (ms). @default {DEFAULT_WATCH_BACKOFF_MAX_MS} */
  watchBackoffMaxMs?: number;
  /** Keepalive ping interval (ms) with a stream open. @default {DEFAULT_ETCD_KEEPALIVE_TIME_MS} */
  keepaliveTimeMs?: number;
  /** Longest a ping may go unanswered (ms). @default {DEFAULT_ETCD_KEEPALIVE_TIMEOUT_MS} */
  keepaliveTimeoutMs?: number;
  /** TLS to etcd (`https://` endpoints) and etcd's username/password auth. */
  security?: EtcdSecurity;
}

/** How the client checks etcd and proves itself to it. */
export interface EtcdSecurity {
  /**
   * For `https://` endpoints: `caPem` signed etcd's certificate (default: the system's roots);
   * `certPem` and `keyPem` are this client's, for an etcd run with `--client-cert-auth`.
   * `mutual` is not used (it is a server's setting).
   */
  tls?: TlsConfig;
  /** An etcd user (`etcdctl user add`), for an etcd with auth enabled. */
  auth?: { username: string; password: string };
}

/**
 * Creates an etcd client for `endpoints` (`http://host:port`, or all `https://host:port`).
 *
 * etcd3 declares a `dialTimeout` option but never reads it, so each call is bounded by a gRPC
 * deadline instead. With `security.auth`, etcd3 trades the password for a token on the first
 * call and whenever etcd says the token is no longer valid (that exchange gets the same
 * deadline). Close the client with `close()`.
 *
 * @throws {TypeError} if `endpoints` is empty, mixes `http://` and `https://`, or does not fit
 * `security` (TLS with `http://`, a certificate without its key, an empty username or
 * password).
 */
export function createEtcdClient(endpoints: string[], options: EtcdClientOptions = {}): Etcd3 {
  if (endpoints.length === 0) {
    throw new TypeError("Cannot create etcd client as no endpoint was given");
  }
  checkSecurity(endpoints, options.security ?? {});
  const callTimeoutMs = options.callTimeoutMs ?? DEFAULT_ETCD_CALL_TIMEOUT_MS;
  const watchBackoffMaxMs = options.watchBackoffMaxMs ?? DEFAULT_WATCH_BACKOFF_MAX_MS;
  const clientOptions: IOptions = {
    hosts: endpoints,
    grpcOptions: {
      // Without pings, a watch on a frozen etcd looks healthy forever: no event is not an error.
      "grpc.keepalive_time_ms": options.keepaliveTimeMs ?? DEFAULT_ETCD_KEEPALIVE_TIME_MS,
      "grpc.keepalive_timeout_ms": options.keepaliveTimeoutMs ?? DEFAULT_ETCD_KEEPALIVE_TIMEOUT_MS,
    },
    dialTimeout: callTimeoutMs,
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: Date.now() + callTimeoutMs },
    faultHandling: {
      host: skipFailedHosts(endpoints.length, DEFAULT_ETCD_HOST_SKIP_MS),
      watchBackoff: backoffSchedule({ initialMs: 100, maxMs: watchBackoffMaxMs }),
    },
    auth: options.security?.auth && { ...options.security.auth },
  };
  if (!endpoints[0].startsWith("https://")) return new Etcd3(clientOptions);
  const tls = options.security?.tls ?? {};
  // etcd3 builds credentials of its own, swapped out below; given the CA, it does not read the
  // system's bundle either.
  if (tls.caPem !== undefined) {
    clientOptions.credentials = { rootCertificate: Buffer.from(tls.caPem) };
  }
  try {
    const client = new Etcd3(clientOptions);
    useCredentials(client, channelCredentials(tls));
    return client;
  } catch (error) {
    // Without a CA, grpc-js has Deno read the system's bundle, which the `deno task`s may not.
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    throw new Error(
      `Cannot connect to etcd over TLS as no CA was given and Deno may not read the system's CA bundle (${error.message}): give the CA of etcd's certificate (--etcd-ca), or allow reading the bundle`,
      { cause: error },
    );
  }
}

/** Refuses endpoints and security that cannot work together. */
function checkSecurity(endpoints: string[], security: EtcdSecurity): void {
  const plain = endpoints.filter((url) => !url.startsWith("https://"));
  if (plain.length > 0 && plain.length < endpoints.length) {
    throw new TypeError(
      `Cannot create etcd client as endpoints must be all https:// or all http://: current value is '${
        endpoints.join(",")
      }'`,
    );
  }
  if (plain.length > 0 && security.tls) {
    throw new TypeError(
      `Cannot create etcd client as TLS options need https:// endpoints: current value is '${
        endpoints.join(",")
      }'`,
    );
  }
  if ((security.tls?.certPem === undefined) !== (security.tls?.keyPem === undefined)) {
    throw new TypeError(
      "Cannot create etcd client as a client certificate and its private key go together: only one was given",
    );
  }
  if (security.auth && (!security.auth.username || !security.auth.password)) {
    throw new TypeError(
      "Cannot create etcd client as auth needs both a username and a password: one is empty",
    );
  }
}

/** The parts of etcd3 1.1.2 (pinned exactly) that hold the channel credentials. */
interface Etcd3Internals {
  pool?: {
    hosts?: { channelCredentials?: grpc.ChannelCredentials }[];
    authenticator?: { credentials?: grpc.ChannelCredentials };
  };
}

/**
 * Makes `client` connect with `credentials` instead of the ones etcd3 builds itself. etcd3 calls
 * grpc-js's `createSsl`, whose channels send the host as the TLS server name, which Deno refuses
 * for an IP address (`https://127.0.0.1:2379` could never connect); `tls.ts`'s credentials
 * handle that. etcd3 creates its gRPC clients on first use, so swapping before any call is
 * enough.
 */
function useCredentials(client: Etcd3, credentials: grpc.ChannelCredentials): void {
  const pool = (client as unknown as Etcd3Internals).pool;
  const authenticator = pool?.authenticator;
  const hosts = pool?.hosts ?? [];
  if (!authenticator?.credentials || !hosts.every((host) => host.channelCredentials)) {
    throw new Error("etcd3's internals have changed: cannot set its TLS credentials");
  }
  authenticator.credentials = credentials;
  for (const host of hosts) host.channelCredentials = credentials;
}

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions["faultHandling"]>["host"]>>;

/** Thrown instead of calling a member that {@linkcode skipFailedHosts} passes over. */
class HostSkippedError extends Error {
  constructor(host: string) {
    super(`etcd member ${host} failed less than ${DEFAULT_ETCD_HOST_SKIP_MS} ms ago`);
    this.name = "HostSkippedError";
  }
}

/**
 * etcd3's per-host fault handling, in place of its default circuit breaker. etcd3 counts a stream
 * that opens as a success, and a dead member's streams open and then fail, so its breaker never
 * opens for watches and lease keepalives, which keep going back to the dead member. Here a member
 * whose call or stream failed on the connection (a recoverable error) is passed over for `skipMs`,
 * whatever succeeds in between, so etcd3 moves on to the next member at once. When every member
 * failed that recently, all are tried again, so a single etcd that comes back is not kept waiting.
 */
function skipFailedHosts(hostCount: number, skipMs: number): (host: string) => HostPolicy {
  const failedAtMs = new Map<string, number>();
  const recentlyFailed = (host: string, now: number) =>
    now - (failedAtMs.get(host) ?? -Infinity) < skipMs;
  return (host) => {
    const policy = {
      execute: async <T>(
        fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T,
        signal?: AbortSignal,
      ): Promise<T> => {
        const now = Date.now();
        const failing = [...failedAtMs.keys()].filter((h) => recentlyFailed(h, now)).length;
        if (recentlyFailed(host, now) && failing < hostCount) throw new HostSkippedError(host);
        try {
          return await fn({ signal: signal ?? new AbortController().signal });
        } catch (error) {
          if (error instanceof Error && isRecoverableError(error)) failedAtMs.set(host, Date.now());
          throw error;
        }
      },
    };
    // etcd3 only calls execute(); the rest of cockatiel's interface (events) is never read.
    return policy as unknown as HostPolicy;
  };
}

type WatchBackoff = NonNullable<NonNullable<IOptions["faultHandling"]>["watchBackoff"]>;

/** Adapts {@linkcode retryDelayMs} to the backoff interface etcd3's watch manager walks. */
function backoffSchedule(options: BackoffOptions, attempt = -1): WatchBackoff {
  return {
    duration: attempt < 0 ? 0 : retryDelayMs(attempt, options),
    next: () => backoffSchedule(options, attempt + 1),
  };
}
