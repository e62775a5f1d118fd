/**
 * One server's health probe: `grpc.health.v1.Health/Check` sent over a plain `node:http2`
 * session, for the balancer's {@linkcode HealthChecker}.
 *
 * Why not a grpc-js client: at 1,000 servers the balancer holds 1,000 probe connections, and a
 * grpc-js channel per server (channel, subchannel, resolver, load balancer, call stack) cost the
 * balancer ~300 MiB resident while checking them all at 2,500 checks/s on Deno 2.9.3; the same
 * checks over one `node:http2` session per server cost ~130 MiB, and ~45 MiB with V8's
 * `--optimize-for-size` (measured side by side with 1,000 grpc-js health servers; see
 * docs/DEVELOPING.md). The wire is the same gRPC: the request and response are (de)serialized by
 * the proto-loader definition of `proto/health.proto`, framed with gRPC's 5-byte prefix, with
 * `grpc-timeout` and the status read from the trailers (or a trailers-only answer).
 *
 * The connection behaves like a grpc-js channel's, where it matters to a probe:
 * - it is opened on the first check and kept; a check while it is still connecting waits within
 *   its deadline;
 * - when it fails or closes, {@linkcode HealthProbeOptions.onDisconnect} is called, and the
 *   next check opens a new one; a failed connect is retried no sooner than gRPC's connection
 *   backoff (1 s, ×1.6, ±20 %), capped at 5 s since a probe's job is to notice a server that
 *   came back; checks in between fail at once with the last error;
 * - a connection that has not completed after {@linkcode CONNECT_TIMEOUT_MS} is dropped (a
 *   hung server accepts TCP but never answers HTTP/2).
 * A check past its deadline resets its stream but keeps the connection: a hung server (SIGSTOP)
 * keeps its connections, and answers on them again as soon as it resumes.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import { joinHostPort, parseAddress } from "./address.ts";
import { retryDelayMs } from "./backoff.ts";
import { HEALTH_DEFINITION, type HealthCheckResponse, type ServingStatus } from "./health.ts";
import { statusName } from "./status.ts";
import { http2TlsOptions, type TlsConfig } from "./tls.ts";

/** gRPC's minimum connect timeout: a connection not up by then is dropped. */
export const CONNECT_TIMEOUT_MS = 20_000;

/**
 * A deadline timer later than this fired after a stall of the balancer itself, not the
 * server's: the check gets one more look (see {@linkcode HealthProbe.check}). Without it, one
 * 500 ms stall of the balancer (seen once under the 1,000-server run, every core busy) failed
 * every check in flight at once and ejected all 1,000 servers.
 */
const LATE_TIMER_MS = 100;

/**
 * HTTP/2 settings of a probe's connection: no HPACK dynamic table for the server's answers. The
 * answers then carry their few headers literally (some bytes more per check), and each of the
 * 1,000 connections keeps no 4 KiB table: ~10 MiB less in the balancer at 1,000 servers.
 */
const PROBE_SETTINGS: http2.Settings = { headerTableSize: 0 };

/** Connection backoff of a probe: gRPC's, capped at 5 s (see the module doc). */
const PROBE_BACKOFF = { initialMs: 1_000, multiplier: 1.6, jitter: 0.2, maxMs: 5_000 };

const CHECK_PATH = "/grpc.health.v1.Health/Check";

const checkMethod = (HEALTH_DEFINITION["grpc.health.v1.Health"] as grpc.ServiceDefinition).Check;

/** The answer to one check: the server's status, or why there is none. */
export type CheckResult =
  | { status: ServingStatus }
  /** A gRPC status other than OK (`code`), from the server or made up here (no answer). */
  | { code: grpc.status; details: string };

/** Options of {@linkcode HealthProbe}. */
export interface HealthProbeOptions {
  /** TLS of the server's port; none: plaintext. */
  tls?: TlsConfig;
  /** Called when an open connection fails or closes (not when {@linkcode HealthProbe.close}d). */
  onDisconnect?: () => void;
}

/** Checks one server's health over a connection of its own. */
export class HealthProbe {
  #authority: string;
  #connectOptions: http2.SecureClientSessionOptions;
  #onDisconnect: () => void;
  #session: http2.ClientHttp2Session | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Connects that failed in a row (0 once one succeeded). */
  #failedConnects = 0;
  /** No new connection before this time (performance.now()). */
  #retryAt = 0;
  #lastError = "";
  #closed = false;
  #requestFor = "";
  #requestBytes: Buffer | undefined;

  /** Creates a probe of `address` (`host:port`); it connects on its first check. */
  constructor(address: string, options: HealthProbeOptions = {}) {
    const parsed = parseAddress(address);
    if (!parsed.ok) throw new TypeError(`Cannot probe '${address}': ${parsed.reason}`);
    const hostPort = joinHostPort(parsed.host, parsed.port);
    this.#authority = `${options.tls ? "https" : "http"}://${hostPort}`;
    this.#connectOptions = {
      ...(options.tls ? http2TlsOptions(options.tls, parsed.host) : {}),
      settings: PROBE_SETTINGS,
    };
    this.#onDisconnect = options.onDisconnect ?? (() => {});
  }

  /**
   * Asks the server for `service`'s status, with a deadline `timeoutMs` away. Never rejects: a
   * failure is a {@linkcode CheckResult} with its gRPC code (UNAVAILABLE for no connection,
   * DEADLINE_EXCEEDED for no answer in time).
   *
   * The deadline is timed here, so a stall of this process could fail checks that were
   * answered on time: timers run before the I/O that piled up. When the deadline timer fires
   * more than {@linkcode LATE_TIMER_MS} late, the check waits once more, as long as the timer
   * was late (at most `timeoutMs`), for that I/O; a hung server still fails it.
   */
  check(service: string, timeoutMs: number): Promise<CheckResult> {
    const session = this.#connect();
    if (session === undefined) {
      return Promise.resolve({ code: grpc.status.UNAVAILABLE, details: this.#lastError });
    }
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      let extended = false;
      let settled = false;
      const done = (result: CheckResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result);
      };
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request({
          ":method": "POST",
          ":path": CHECK_PATH,
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-timeout": `${Math.max(1, Math.ceil(timeoutMs))}m`,
        });
      } catch (error) {
        return done({ code: grpc.status.UNAVAILABLE, details: String(error) });
      }
      const deadline = performance.now() + timeoutMs;
      const expire = () => {
        // A timer that fires late means this process stalled (GC, CPU starved), and an answer
        // may be waiting unread: look once more after the I/O it missed.
        const late = performance.now() - deadline;
        if (late > LATE_TIMER_MS && !extended) {
          extended = true;
          timer = setTimeout(expire, Math.min(late, timeoutMs));
          return;
        }
        stream.close(http2.constants.NGHTTP2_CANCEL);
        done({
          code: grpc.status.DEADLINE_EXCEEDED,
          details: `no answer within ${timeoutMs} ms`,
        });
      };
      timer = setTimeout(expire, timeoutMs);
      let headers: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders | undefined;
      const chunks: Buffer[] = [];
      stream.on("response", (h) => headers = h);
      stream.on("trailers", (t) => trailers = t);
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", (error) => {
        done({ code: grpc.status.UNAVAILABLE, details: error.message });
      });
      stream.on("close", () => {
        done(readAnswer(headers, trailers ?? headers, Buffer.concat(chunks), stream.rstCode));
      });
      stream.end(this.#request(service));
    });
  }

  /** The framed request for `service`, built once (a probe asks about the same one each time). */
  #request(service: string): Buffer {
    if (this.#requestFor !== service || this.#requestBytes === undefined) {
      this.#requestFor = service;
      this.#requestBytes = framed(checkMethod.requestSerialize({ service }));
    }
    return this.#requestBytes;
  }

  /** Closes the connection; later checks fail. */
  close(): void {
    this.#closed = true;
    this.#lastError = "the probe is closed";
    this.#drop(this.#session);
    this.#retryAt = Infinity;
  }

  /** The open (or opening) session; a new one unless backing off; undefined while backing off. */
  #connect(): http2.ClientHttp2Session | undefined {
    if (this.#session !== undefined) return this.#session;
    if (this.#closed || performance.now() < this.#retryAt) return undefined;
    const session = http2.connect(this.#authority, this.#connectOptions);
    this.#session = session;
    this.#connectTimer = setTimeout(() => {
      this.#failed(session, `no HTTP/2 connection within ${CONNECT_TIMEOUT_MS} ms`);
    }, CONNECT_TIMEOUT_MS);
    session.once("connect", () => {
      clearTimeout(this.#connectTimer);
      this.#failedConnects = 0;
    });
    session.on("error", (error) => this.#failed(session, error.message));
    session.on("goaway", () => this.#failed(session, "the server closed the connection (GOAWAY)"));
    session.on("close", () => this.#failed(session, "the connection closed"));
    return session;
  }

  /** Drops `session` if it is the current one, and schedules when to connect again. */
  #failed(session: http2.ClientHttp2Session, reason: string): void {
    if (session !== this.#session) return;
    const connected = !session.connecting;
    this.#drop(session);
    this.#lastError = reason;
    if (connected) {
      // It was up: reconnect at once (a restarted server), as grpc-js does.
      this.#failedConnects = 0;
      this.#retryAt = 0;
    } else {
      this.#retryAt = performance.now() + retryDelayMs(this.#failedConnects++, PROBE_BACKOFF);
    }
    if (!this.#closed) this.#onDisconnect();
  }

  #drop(session: http2.ClientHttp2Session | undefined): void {
    if (session === undefined) return;
    if (session === this.#session) this.#session = undefined;
    clearTimeout(this.#connectTimer);
    session.removeAllListeners();
    session.on("error", () => {}); // late errors of a dropped session
    if (!session.destroyed) session.destroy();
  }
}

/** gRPC's message framing: uncompressed flag, 4-byte big-endian length, message. */
function framed(message: Buffer): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}

/** The result of a finished Check stream. */
function readAnswer(
  headers: http2.IncomingHttpHeaders,
  trailers: http2.IncomingHttpHeaders,
  body: Buffer,
  rstCode: number | undefined,
): CheckResult {
  const code = trailers["grpc-status"];
  if (code === undefined) {
    const httpStatus = headers[":status"];
    return {
      code: grpc.status.UNAVAILABLE,
      details: httpStatus !== undefined && Number(httpStatus) !== 200
        ? `HTTP status ${httpStatus}, not a gRPC answer`
        : `the stream ended without a gRPC status${rstCode ? ` (reset, code ${rstCode})` : ""}`,
    };
  }
  if (code !== "0") {
    const message = trailers["grpc-message"];
    return {
      code: Number(code),
      details: typeof message === "string" ? percentDecoded(message) : statusName(Number(code)),
    };
  }
  if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) {
    return { code: grpc.status.INTERNAL, details: "the answer is not one uncompressed message" };
  }
  try {
    const response = checkMethod.responseDeserialize(body.subarray(5)) as HealthCheckResponse;
    return { status: response.status };
  } catch (error) {
    return { code: grpc.status.INTERNAL, details: `the answer does not decode: ${error}` };
  }
}

/** A `grpc-message` value, percent-decoded as gRPC sends it (as it is if malformed). */
function percentDecoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
