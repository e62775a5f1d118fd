/**
 * The etcd client the balancer and the backends build: call deadlines, keepalive pings and a
 * short watch backoff. The key layout and value format are in `etcd_layout.ts`, which does not
 * load the etcd3 package.
 *
 * @module
 */
import { Etcd3, type IOptions } from "etcd3";
import { type BackoffOptions, retryDelayMs } from "./backoff.ts";

/** Deadline of each unary etcd call (ms), so a call cannot hang while etcd is down. */
export const DEFAULT_ETCD_CALL_TIMEOUT_MS = 5_000;

/** Longest wait between two watch reconnection attempts (ms). */
export const DEFAULT_WATCH_BACKOFF_MAX_MS = 5_000;

/**
 * Interval of HTTP/2 keepalive pings (ms) on connections with open streams, so a watch on a
 * frozen or partitioned etcd is noticed. etcd refuses pings more frequent than its
 * `--grpc-keepalive-min-time` (5 s by default).
 */
export const DEFAULT_ETCD_KEEPALIVE_TIME_MS = 10_000;

/** How long a keepalive ping may go unanswered before the connection is dropped (ms). */
export const DEFAULT_ETCD_KEEPALIVE_TIMEOUT_MS = 5_000;

/** Options of {@linkcode createEtcdClient}. */
export interface EtcdClientOptions {
  /**
   * Deadline of each unary call (ms). Streams (watches, lease keepalives) get none: they are
   * meant to stay open, and etcd3 reconnects them itself.
   * @default {DEFAULT_ETCD_CALL_TIMEOUT_MS}
   */
  callTimeoutMs?: number;
  /**
   * Longest wait between two watch reconnection attempts (ms). etcd3's own default grows to
   * 30 s, which would leave the balancer blind that long after etcd comes back.
   * @default {DEFAULT_WATCH_BACKOFF_MAX_MS}
   */
  watchBackoffMaxMs?: number;
  /**
   * Interval of keepalive pings (ms) while a watch or a lease keepalive is open; at least
   * etcd's `--grpc-keepalive-min-time`.
   * @default {DEFAULT_ETCD_KEEPALIVE_TIME_MS}
   */
  keepaliveTimeMs?: number;
  /**
   * How long a ping may go unanswered before the connection is dropped (ms).
   * @default {DEFAULT_ETCD_KEEPALIVE_TIMEOUT_MS}
   */
  keepaliveTimeoutMs?: number;
}

/**
 * Creates an etcd client for `endpoints` (`http://host:port`).
 *
 * etcd3 1.1.2 declares a `dialTimeout` option but never reads it, so the bound on each call
 * comes from a gRPC deadline instead. The client must be closed with `close()`.
 *
 * @throws {TypeError} if `endpoints` is empty.
 */
export function createEtcdClient(endpoints: string[], options: EtcdClientOptions = {}): Etcd3 {
  if (endpoints.length === 0) {
    throw new TypeError("Cannot create etcd client as no endpoint was given");
  }
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
      watchBackoff: backoffSchedule({ initialMs: 100, maxMs: watchBackoffMaxMs }),
    },
  };
  return new Etcd3(clientOptions);
}

type WatchBackoff = NonNullable<NonNullable<IOptions["faultHandling"]>["watchBackoff"]>;

/** Adapts {@linkcode retryDelayMs} to the backoff interface etcd3's watch manager walks. */
function backoffSchedule(options: BackoffOptions, attempt = -1): WatchBackoff {
  return {
    duration: attempt < 0 ? 0 : retryDelayMs(attempt, options),
    next: () => backoffSchedule(options, attempt + 1),
  };
}
