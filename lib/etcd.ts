/**
 * What the balancer and the backends share about etcd: the client they build, the key layout
 * (`<prefix><address>`), how a key's value names a server, and the retry schedule used while
 * etcd is unreachable.
 *
 * @module
 */
import { Etcd3, type IOptions } from "etcd3";
import { parseAddress } from "./address.ts";

/** Prefix under which backends register and the balancer discovers them. */
export const DEFAULT_ETCD_PREFIX = "/servers/";

/** TTL of a backend's lease (s): a dead backend drops out of discovery within this time. */
export const DEFAULT_LEASE_TTL_S = 5;

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

/** Longest value accepted under the prefix, so a stray key cannot make us parse megabytes. */
export const MAX_SERVER_VALUE_LENGTH = 4_096;

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

/** The retry schedule of {@linkcode retryDelayMs}. */
export interface BackoffOptions {
  /** @default {1_000} */
  initialMs?: number;
  /** @default {1.6} */
  multiplier?: number;
  /** Each delay is moved at random by up to this fraction, either way. @default {0.2} */
  jitter?: number;
  /** @default {30_000} */
  maxMs?: number;
}

/**
 * Delay (ms) before retry number `attempt` (0 for the first retry): grpc's connection backoff,
 * `initialMs * multiplier^attempt` capped at `maxMs`, with jitter drawn from `rng`.
 */
export function retryDelayMs(
  attempt: number,
  options: BackoffOptions = {},
  rng: () => number = Math.random,
): number {
  const { initialMs = 1_000, multiplier = 1.6, jitter = 0.2, maxMs = 30_000 } = options;
  const base = Math.min(maxMs, initialMs * multiplier ** attempt);
  return Math.round(base * (1 + jitter * (rng() * 2 - 1)));
}

/** Resolves after `ms`, or at once when `signal` aborts; never rejects, leaves no timer behind. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

type WatchBackoff = NonNullable<NonNullable<IOptions["faultHandling"]>["watchBackoff"]>;

/** Adapts {@linkcode retryDelayMs} to the backoff interface etcd3's watch manager walks. */
function backoffSchedule(options: BackoffOptions, attempt = -1): WatchBackoff {
  return {
    duration: attempt < 0 ? 0 : retryDelayMs(attempt, options),
    next: () => backoffSchedule(options, attempt + 1),
  };
}

/** Result of {@linkcode parseServerValue}. */
export type ParsedServerValue = { ok: true; address: string } | { ok: false; reason: string };

/**
 * Reads the server named by the etcd entry `key` = `value` under `prefix`.
 *
 * The value is either the bare address `host:port` (as the original system wrote it) or a JSON
 * object with a string `address` field (other fields are ignored). The address must pass
 * {@linkcode parseAddress} and is returned normalised.
 */
export function parseServerValue(key: string, value: string, prefix: string): ParsedServerValue {
  if (!key.startsWith(prefix)) {
    return { ok: false, reason: `the key is not under the prefix '${prefix}'` };
  }
  if (key.length === prefix.length) {
    return { ok: false, reason: "the key has no name after the prefix" };
  }
  if (value.length > MAX_SERVER_VALUE_LENGTH) {
    return { ok: false, reason: `the value is longer than ${MAX_SERVER_VALUE_LENGTH} characters` };
  }
  const text = value.trim();
  if (text.length === 0) return { ok: false, reason: "the value is empty" };
  if (!text.startsWith("{")) return checkAddress(text);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return { ok: false, reason: `the value is not valid JSON (${(error as Error).message})` };
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return { ok: false, reason: "the JSON value is not an object" };
  }
  const address = (parsed as Record<string, unknown>).address;
  if (address === undefined) return { ok: false, reason: "the JSON value has no 'address' field" };
  if (typeof address !== "string") {
    return { ok: false, reason: "the JSON value's 'address' field is not a string" };
  }
  return checkAddress(address);
}

function checkAddress(text: string): ParsedServerValue {
  const parsed = parseAddress(text);
  if (!parsed.ok) {
    const shown = text.length > 64 ? `${text.slice(0, 64)}...` : text;
    return { ok: false, reason: `the address '${shown}' is invalid: ${parsed.reason}` };
  }
  return { ok: true, address: parsed.address };
}
