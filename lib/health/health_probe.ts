/**
 * One server's health probe: `grpc.health.v1.Health/Check` over an HTTP/2 connection of its own,
 * for the balancer's {@linkcode HealthChecker}. The connection is spoken here, frame by frame
 * (RFC 9113, with `lib/health/hpack.ts`), over a plain `node:net` socket (`node:tls` with TLS).
 *
 * Why not a library client: at scale the balancer holds one probe connection per server and
 * checks them up to the checker's cap of checks per second. A grpc-js channel, or a
 * `node:http2` session, per server costs far more memory than frames written here over a
 * `node:net` socket: each check there builds a stream object, its listeners and buffers, and V8
 * lets that garbage grow the heap well past what is live (docs/DEVELOPING.md has the figures).
 *
 * What a check allocates matters as much, at that rate: what lives a few seconds is promoted to
 * V8's old generation, which then grows until a full GC. A check through
 * {@linkcode HealthProbe.checkThen} (the checker's way) reuses the probe's stream state and
 * request bytes, gets the answer's header strings from HPACK's interned ones and a constant
 * result for the usual answers, and is timed by one {@linkcode ProbeSweeper} for all: what is
 * left is the socket's own (`node:net`'s buffers and callbacks).
 *
 * What the connection does (a client that opens one stream per check):
 * - sends the preface with SETTINGS: no server push, no HPACK dynamic table for the answers (so
 *   1,000 connections keep no 4 KiB table each); acknowledges the server's SETTINGS and PINGs;
 * - follows flow control both ways: answers are a few bytes, but the connection's receive window
 *   is given back once 16 KiB were read, and a request is not sent past the server's window;
 * - honours MAX_CONCURRENT_STREAMS, GOAWAY (streams the server will not process fail at once,
 *   the others finish; the next check opens a new connection) and RST_STREAM;
 * - treats anything malformed (a frame too large, a header block that does not decode, a
 *   CONTINUATION out of place, a PUSH_PROMISE it said it would not take) as a connection error:
 *   GOAWAY with the code, the socket closed, every check in flight failed with UNAVAILABLE.
 * Answers are bounded: a header block or a message over 64 KiB fails (the balancer never needs
 * more than a few bytes).
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
 * A check past its deadline on a connection that has read nothing since the check was sent
 * closes it, and the next check, at its usual time, opens a new one with no backoff (Envoy's
 * health checker does the same): a host cut off the network sends no refusal, and a kept
 * connection would come back only at TCP's next retransmission, seconds after the link does,
 * where a new one connects at once. A check past its deadline on a connection that is otherwise
 * answering only resets its stream.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import net from "node:net";
import tls from "node:tls";
import { joinHostPort, parseAddress } from "../wire/address.ts";
import { retryDelayMs } from "../wire/backoff.ts";
import {
  HEALTH_DEFINITION,
  type HealthCheckResponse,
  type ServingStatus,
} from "../wire/grpc_health.ts";
import { encodeField, HpackDecoder, HpackError } from "./hpack.ts";
import { encodeOrcaRequest, ORCA_TRAILER } from "../wire/orca.ts";
import { statusName } from "../wire/status.ts";
import { http2TlsOptions, type TlsConfig } from "../wire/tls.ts";
import { ProbeSweeper, type SweptCheck } from "./probe_sweeper.ts";

/** gRPC's minimum connect timeout: a connection not up by then is dropped. */
export const CONNECT_TIMEOUT_MS = 20_000;

/** Connection backoff of a probe: gRPC's, capped at 5 s (see the module doc). */
const PROBE_BACKOFF = { initialMs: 1_000, multiplier: 1.6, jitter: 0.2, maxMs: 5_000 };

const CHECK_PATH = "/grpc.health.v1.Health/Check";
const ORCA_STREAM_PATH = "/xds.service.orca.v3.OpenRcaService/StreamCoreMetrics";

const checkMethod = (HEALTH_DEFINITION["grpc.health.v1.Health"] as grpc.ServiceDefinition).Check;

/**
 * Most checks in flight on one connection; more fail at once with UNAVAILABLE. The checker has
 * one per server; the bound keeps a connection's scan for a stream short.
 */
export const MAX_CHECKS_PER_CONNECTION = 100;

/** Largest header block or answer message taken; more fails the check (or the connection). */
const MAX_ANSWER_BYTES = 64 * 1024;

// HTTP/2 (RFC 9113): frame types, flags, settings and error codes used here.
const FRAME_HEADER_BYTES = 9;
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;
const SETTINGS_HEADER_TABLE_SIZE = 0x1;
const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;
const PROTOCOL_ERROR = 0x1;
const FLOW_CONTROL_ERROR = 0x3;
const FRAME_SIZE_ERROR = 0x6;
const CANCEL = 0x8;
const COMPRESSION_ERROR = 0x9;
/** The frame size every peer accepts, and the one we advertise (the default). */
const MAX_FRAME_BYTES = 16_384;
const DEFAULT_WINDOW = 65_535;
const MAX_WINDOW = 2 ** 31 - 1;
const MAX_STREAM_ID = 2 ** 31 - 1;

/** Client preface, then our SETTINGS: no HPACK dynamic table, no push. */
const PREFACE = Buffer.concat([
  Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"),
  frame(
    SETTINGS,
    0,
    0,
    settingsPayload([[SETTINGS_HEADER_TABLE_SIZE, 0], [SETTINGS_ENABLE_PUSH, 0]]),
  ),
]);
const SETTINGS_ACK = frame(SETTINGS, ACK, 0, new Uint8Array(0));

/** The answer to one check: the server's status, or why there is none. */
export type CheckResult =
  | { status: ServingStatus }
  /**
   * A gRPC status (`code`), from the server or made up here (no answer): other than OK, except
   * at the end of a streaming call.
   */
  | { code: grpc.status; details: string };

/** Options of {@linkcode HealthProbe}. */
export interface HealthProbeOptions {
  /** TLS of the server's port; none: plaintext. */
  tls?: TlsConfig;
  /** Called when an open connection fails or closes (not when {@linkcode HealthProbe.close}d). */
  onDisconnect?: () => void;
  /**
   * Times the probe's checks, shared by every probe of its owner (the checker), who stops it.
   * @default {a sweeper of the probe's own, stopped when it closes}
   */
  sweeper?: ProbeSweeper;
}

/** Checks one server's health over a connection of its own. */
export class HealthProbe {
  #host: string;
  #port: number;
  #authority: string;
  #tls: TlsConfig | undefined;
  #onDisconnect: () => void;
  #sweeper: ProbeSweeper;
  /** The sweeper is the probe's own: it stops it on close. */
  #ownSweeper: boolean;
  #connection: ProbeConnection | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Connects that failed in a row (0 once one succeeded). */
  #failedConnects = 0;
  /** No new connection before this time (performance.now()). */
  #retryAt = 0;
  #lastError = "";
  #closed = false;
  #requestService = "";
  #requestTimeoutMs = 0;
  #request: Request | undefined;
  /**
   * Reused by each check while none other is in flight: a new object per check, at the
   * checker's rate, is one V8 comes to allocate straight into its old generation (pretenured,
   * since many live long while connections open), which then grows until a full GC.
   */
  #stream: StreamState = { ...BLANK_STREAM };

  /** Creates a probe of `address` (`host:port`); it connects on its first check. */
  constructor(address: string, options: HealthProbeOptions = {}) {
    const parsed = parseAddress(address);
    if (!parsed.ok) throw new TypeError(`Cannot probe '${address}': ${parsed.reason}`);
    // An IPv6 literal is dialled (and checked against a certificate) without its brackets.
    this.#host = parsed.host.replace(/^\[(.*)\]$/, "$1");
    this.#port = parsed.port;
    this.#authority = joinHostPort(parsed.host, parsed.port);
    this.#tls = options.tls;
    this.#onDisconnect = options.onDisconnect ?? (() => {});
    this.#ownSweeper = options.sweeper === undefined;
    this.#sweeper = options.sweeper ?? new ProbeSweeper();
  }

  /**
   * Asks the server for `service`'s status, with a deadline `timeoutMs` away. Never rejects: a
   * failure is a {@linkcode CheckResult} with its gRPC code (UNAVAILABLE for no connection,
   * DEADLINE_EXCEEDED for no answer in time).
   *
   * The deadline is timed here (by the {@linkcode ProbeSweeper}), so a stall of this process
   * could fail checks that were answered on time: timers run before the I/O that piled up. When
   * the deadline is looked at late, after such a stall, the check waits once more, as long as
   * the stall (at most `timeoutMs`), for that I/O; a hung server still fails it.
   */
  check(service: string, timeoutMs: number): Promise<CheckResult> {
    return new Promise((resolve) => this.checkThen(service, timeoutMs, resolve));
  }

  /**
   * {@linkcode check} calling `onResult` instead of returning a promise (once, and never before
   * it returns): what the checker uses, so a check at 1,000 checks/s allocates no promise.
   */
  checkThen(service: string, timeoutMs: number, onResult: CheckCallback): void {
    const connection = this.#connect();
    if (connection === undefined) {
      const result = { code: grpc.status.UNAVAILABLE, details: this.#lastError };
      queueMicrotask(() => onResult(result));
      return;
    }
    // The probe's own stream state, blank again once its last check ended (the checker's case);
    // otherwise (checks at once through `check`) a new one.
    let stream = this.#stream;
    if (stream.onResult !== NO_RESULT) stream = { ...BLANK_STREAM };
    stream.connection = connection;
    stream.timeoutMs = timeoutMs;
    stream.onResult = onResult;
    connection.open(stream, this.#requestFor(service, timeoutMs));
  }

  /**
   * Opens `xds.service.orca.v3.OpenRcaService/StreamCoreMetrics` (out-of-band ORCA, gRFC A51)
   * on the probe's connection, asking for a report every `intervalMs`: `onReport` gets each
   * report's bytes, and `onEnd` the stream's end, once (UNIMPLEMENTED from a server without the
   * service, UNAVAILABLE when the connection goes). It has no deadline: it lasts as long as the
   * connection, which a GOAWAY ends for it (so a draining connection is not held open).
   */
  streamLoad(
    intervalMs: number,
    onReport: (report: Buffer) => void,
    onEnd: (result: CheckResult) => void,
  ): void {
    const connection = this.#connect();
    if (connection === undefined) {
      const result = { code: grpc.status.UNAVAILABLE, details: this.#lastError };
      queueMicrotask(() => onEnd(result));
      return;
    }
    const stream: StreamState = { ...BLANK_STREAM, connection, onResult: onEnd };
    stream.onMessage = onReport;
    connection.open(
      stream,
      buildRequest(
        this.#tls ? "https" : "http",
        this.#authority,
        ORCA_STREAM_PATH,
        undefined,
        framed(encodeOrcaRequest(intervalMs)),
      ),
      false,
    );
  }

  /** The request for `service`, built once (a probe asks about the same one each time). */
  #requestFor(service: string, timeoutMs: number): Request {
    if (
      this.#request === undefined || this.#requestService !== service ||
      this.#requestTimeoutMs !== timeoutMs
    ) {
      this.#requestService = service;
      this.#requestTimeoutMs = timeoutMs;
      this.#request = buildRequest(
        this.#tls ? "https" : "http",
        this.#authority,
        CHECK_PATH,
        `${Math.max(1, Math.ceil(timeoutMs))}m`,
        framed(checkMethod.requestSerialize({ service })),
      );
    }
    return this.#request;
  }

  /** Closes the connection; later checks fail. */
  close(): void {
    this.#closed = true;
    this.#lastError = "the probe is closed";
    this.#retryAt = Infinity;
    const connection = this.#connection;
    this.#connection = undefined;
    clearTimeout(this.#connectTimer);
    connection?.destroy(this.#lastError);
    if (this.#ownSweeper) this.#sweeper.stop();
  }

  /** The open (or opening) connection, or a new one; undefined while backing off. */
  #connect(): ProbeConnection | undefined {
    if (this.#connection !== undefined) return this.#connection;
    if (this.#closed || performance.now() < this.#retryAt) return undefined;
    const connection: ProbeConnection = new ProbeConnection(this.#host, this.#port, this.#tls, {
      onUp: () => {
        clearTimeout(this.#connectTimer);
        this.#failedConnects = 0;
      },
      onGone: (reason, wasUp, silent) => this.#failed(connection, reason, wasUp, silent),
    }, this.#sweeper);
    this.#connection = connection;
    this.#connectTimer = setTimeout(() => {
      connection.destroy(`no HTTP/2 connection within ${CONNECT_TIMEOUT_MS} ms`);
    }, CONNECT_TIMEOUT_MS);
    return connection;
  }

  /**
   * `connection` takes no more checks: schedules when to connect again. One closed here for
   * silence is replaced at the next check, on the checker's schedule: no backoff, and no check
   * at once (a whole rack gone silent would otherwise be probed back to back).
   */
  #failed(connection: ProbeConnection, reason: string, wasUp: boolean, silent: boolean): void {
    if (connection !== this.#connection) return;
    this.#connection = undefined;
    clearTimeout(this.#connectTimer);
    this.#lastError = reason;
    if (silent) {
      this.#retryAt = 0;
      return;
    }
    if (wasUp) {
      // It was up: reconnect at once (a restarted server), as grpc-js does.
      this.#failedConnects = 0;
      this.#retryAt = 0;
    } else {
      this.#retryAt = performance.now() + retryDelayMs(this.#failedConnects++, PROBE_BACKOFF);
    }
    if (!this.#closed) this.#onDisconnect();
  }
}

/** A request: HEADERS then DATA (END_STREAM), stream ids to fill in per call. */
interface Request {
  bytes: Buffer;
  /** Offset of the DATA frame (its stream id is at +5). */
  dataAt: number;
  /** Bytes of the DATA frame's payload (what flow control counts). */
  dataBytes: number;
}

/** A unary or server-streaming call's request to `path`; no `timeout`: no deadline. */
function buildRequest(
  scheme: string,
  authority: string,
  path: string,
  timeout: string | undefined,
  body: Buffer,
): Request {
  const block = Uint8Array.from([
    ...encodeField(":method", "POST"),
    ...encodeField(":scheme", scheme),
    ...encodeField(":path", path),
    ...encodeField(":authority", authority),
    ...encodeField("content-type", "application/grpc"),
    ...encodeField("te", "trailers"),
    ...(timeout === undefined ? [] : encodeField("grpc-timeout", timeout)),
  ]);
  if (block.length > MAX_FRAME_BYTES || body.length > MAX_FRAME_BYTES) {
    throw new RangeError("A probe's request larger than one HTTP/2 frame");
  }
  const headers = frame(HEADERS, END_HEADERS, 0, block);
  const data = frame(DATA, END_STREAM, 0, body);
  return { bytes: Buffer.concat([headers, data]), dataAt: headers.length, dataBytes: body.length };
}

/** One check's stream, as the answer arrives; its deadline is the sweeper's. */
interface StreamState extends SweptCheck {
  id: number;
  httpStatus: string | undefined;
  grpcStatus: string | undefined;
  grpcMessage: string | undefined;
  /** Bytes of DATA received. */
  bodyBytes: number;
  /**
   * The message, decoded as soon as it is whole: an answer is one small message in one DATA
   * frame, read where it lies (no copy); a message split over frames is gathered in `body`.
   */
  message: CheckResult | undefined;
  body: Buffer | undefined;
  /** The answer's ORCA load report (`endpoint-load-metrics-bin`, base64), if it had one. */
  loadReport: string | undefined;
  /** The connection it is on (to reset it at its deadline); undefined before its first check. */
  connection: ProbeConnection | undefined;
  /** Its connection's count of reads when it was sent: unchanged at the deadline, it is silent. */
  readsAtOpen: number;
  /**
   * Called once, with the result (through {@linkcode complete}); `NO_RESULT` while no check
   * uses the state (a probe reuses it then).
   */
  onResult: CheckCallback;
  /**
   * A server-streaming call's (out-of-band ORCA): takes each message as it is whole, and the
   * stream has no deadline; undefined for a check.
   */
  onMessage: ((message: Buffer) => void) | undefined;
  /** Bytes of DATA read on a streaming call since its window was last given back. */
  unacknowledged: number;
}

/** Takes a check's result, and the ORCA load report (base64) its answer carried, if any. */
export type CheckCallback = (result: CheckResult, loadReport?: string) => void;

const NO_RESULT = (_result: CheckResult): void => {};

/** A stream state before its check: a new one is a copy, and an ended one is made this again. */
const BLANK_STREAM: Readonly<StreamState> = {
  id: 0,
  httpStatus: undefined,
  grpcStatus: undefined,
  grpcMessage: undefined,
  bodyBytes: 0,
  message: undefined,
  body: undefined,
  loadReport: undefined,
  connection: undefined,
  deadline: 0,
  timeoutMs: 0,
  extended: false,
  readsAtOpen: 0,
  slot: -1,
  onResult: NO_RESULT,
  onMessage: undefined,
  unacknowledged: 0,
  expire: expireStream,
};

/** Fails the check of stream `this`, past its deadline, on its connection (for the sweeper). */
function expireStream(this: StreamState): void {
  this.connection!.expire(this);
}

/**
 * Ends `stream`'s check with `result` (no longer tracked by a sweeper). Its state is blank again
 * (no reference to the connection or the answer is kept), and may be reused by the next check as
 * soon as `onResult` runs: nothing reads it after this.
 */
function complete(stream: StreamState, result: CheckResult): void {
  const onResult = stream.onResult;
  const loadReport = stream.loadReport;
  Object.assign(stream, BLANK_STREAM);
  onResult(result, loadReport);
}

/** What a {@linkcode ProbeConnection} tells its probe. */
interface ConnectionEvents {
  /** The server's SETTINGS arrived: the connection is up. */
  onUp: () => void;
  /**
   * The connection takes no more checks (closed, failed, or going away); once. `silent`: it was
   * closed here for saying nothing until a check's deadline.
   */
  onGone: (reason: string, wasUp: boolean, silent: boolean) => void;
}

/** The client side of one HTTP/2 connection that carries Check calls (see the module doc). */
class ProbeConnection {
  #socket: net.Socket;
  #events: ConnectionEvents;
  /** Times the checks in flight here. */
  #sweeper: ProbeSweeper;
  #up = false;
  /** No new streams: the server sent GOAWAY, or the ids ran out. */
  #draining = false;
  #destroyed = false;
  /** Reads so far: a check that sees it unchanged at its deadline was on a silent connection. */
  #reads = 0;
  /**
   * Streams in flight, in no order, found by a scan: a connection carries one check at a time
   * from the checker, and at most {@linkcode MAX_CHECKS_PER_CONNECTION}. (Not a `Map`, for the
   * reason the {@linkcode ProbeSweeper} keeps an array.)
   */
  #streams: StreamState[] = [];
  #nextStreamId = 1;
  #hpack = new HpackDecoder();
  /** Our SETTINGS are acknowledged (the HPACK limit of 0 is in force). */
  #settingsAcked = false;
  #maxStreams = Infinity;
  #sendWindow = DEFAULT_WINDOW;
  #peerInitialWindow = DEFAULT_WINDOW;
  /** Bytes of DATA read since we last gave the connection's receive window back. */
  #unacknowledged = 0;
  /** Bytes read and not yet parsed. */
  #in = Buffer.alloc(512);
  #inLength = 0;
  /** The stream whose header block is being decoded (undefined: not ours, decoded for HPACK). */
  #decoding: StreamState | undefined;
  /** Takes the fields of `#decoding` (one function per connection, not one per block). */
  #onField = (name: string, value: string): void => {
    const stream = this.#decoding;
    if (stream === undefined) return;
    if (name === ":status") stream.httpStatus = value;
    else if (name === "grpc-status") stream.grpcStatus = value;
    else if (name === "grpc-message") stream.grpcMessage = value;
    else if (name === ORCA_TRAILER) stream.loadReport = value;
  };
  /** A header block still waiting for its CONTINUATION frames. */
  #block: { streamId: number; endStream: boolean; chunks: Buffer[]; bytes: number } | undefined;

  constructor(
    host: string,
    port: number,
    tlsConfig: TlsConfig | undefined,
    events: ConnectionEvents,
    sweeper: ProbeSweeper,
  ) {
    this.#events = events;
    this.#sweeper = sweeper;
    if (tlsConfig) {
      const socket = tls.connect({
        host,
        port,
        ...http2TlsOptions(tlsConfig, host),
        ALPNProtocols: ["h2"],
      });
      socket.once("secureConnect", () => {
        if (socket.alpnProtocol !== "h2") {
          this.destroy("the server did not agree to HTTP/2 over TLS (ALPN)");
        }
      });
      this.#socket = socket;
    } else {
      this.#socket = net.connect({ host, port });
    }
    this.#socket.setNoDelay(true);
    this.#socket.write(PREFACE);
    this.#socket.on("data", (chunk: Buffer) => this.#read(chunk));
    this.#socket.on("error", (error: Error) => this.destroy(error.message));
    this.#socket.on("end", () => this.destroy("the server closed the connection"));
    this.#socket.on("close", () => this.destroy("the connection closed"));
  }

  /**
   * Sends `request` on a new stream for `stream`, timed by the sweeper unless not `timed`; false
   * when it could not (then `stream`'s check ends with why).
   */
  open(stream: StreamState, request: Request, timed = true): boolean {
    let why = "";
    if (this.#destroyed || this.#draining) why = "the connection is closing";
    else if (this.#streams.length >= this.#maxStreams) {
      why = `the server takes at most ${this.#maxStreams} streams at once`;
    } else if (this.#streams.length >= MAX_CHECKS_PER_CONNECTION) {
      why = `a probe takes at most ${MAX_CHECKS_PER_CONNECTION} checks at once`;
    } else if (request.dataBytes > Math.min(this.#sendWindow, this.#peerInitialWindow)) {
      why = "the server's flow-control window is too small for the request";
    }
    if (why !== "") {
      queueMicrotask(() => complete(stream, { code: grpc.status.UNAVAILABLE, details: why }));
      return false;
    }
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    stream.id = id;
    stream.readsAtOpen = this.#reads;
    this.#streams.push(stream);
    this.#sendWindow -= request.dataBytes;
    // The request built once is sent as it is when nothing waits to be written (the last one
    // went out long ago: it was answered or timed out); otherwise a copy.
    const bytes = this.#socket.writableLength === 0 ? request.bytes : Buffer.from(request.bytes);
    bytes.writeUInt32BE(id, 5);
    bytes.writeUInt32BE(id, request.dataAt + 5);
    this.#socket.write(bytes);
    if (this.#nextStreamId > MAX_STREAM_ID) this.#goingAway("the connection ran out of stream ids");
    if (timed) this.#sweeper.track(stream);
    return true;
  }

  /**
   * Fails `stream`, past its deadline: closes the connection if nothing was read on it since the
   * stream was sent (see the module doc), else resets the stream alone.
   */
  expire(stream: StreamState): void {
    const details = `no answer within ${stream.timeoutMs} ms`;
    if (this.#reads !== stream.readsAtOpen) {
      this.cancel(stream, { code: grpc.status.DEADLINE_EXCEEDED, details });
      return;
    }
    // Failed with DEADLINE_EXCEEDED before the connection goes, which fails the rest UNAVAILABLE.
    this.#finish(stream, { code: grpc.status.DEADLINE_EXCEEDED, details });
    this.destroy(`the connection was silent: ${details}`, undefined, true);
  }

  /** Ends `stream` with `result` and resets it (RST_STREAM CANCEL); the connection stays. */
  cancel(stream: StreamState, result: CheckResult): void {
    const id = stream.id; // the state is blank once finished
    if (this.#finish(stream, result) && !this.#destroyed) {
      this.#socket.write(rstStream(id, CANCEL));
    }
  }

  /**
   * Closes the connection at once, failing every stream with `reason`; with `last`, that frame
   * is sent first (then the socket closes once it is written).
   */
  destroy(reason: string, last?: Buffer, silent = false): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    const socket = this.#socket;
    if (last === undefined) socket.destroy();
    else socket.end(last, () => socket.destroy());
    const wasUp = this.#up;
    for (const stream of [...this.#streams]) {
      this.#finish(stream, { code: grpc.status.UNAVAILABLE, details: reason });
    }
    if (!this.#draining) this.#events.onGone(reason, wasUp, silent);
  }

  /** A connection error (RFC 9113 §5.4.1): GOAWAY with `code`, then closed. */
  #fail(code: number, reason: string): void {
    this.destroy(`HTTP/2 protocol error: the server sent ${reason}`, goaway(code));
  }

  /** Takes no more streams; the connection closes once those in flight end. */
  #goingAway(reason: string): void {
    if (this.#draining) return;
    this.#draining = true;
    this.#events.onGone(reason, this.#up, false);
    // A streaming call would hold the connection open: it ends now, and opens on the next one.
    for (const stream of [...this.#streams]) {
      if (stream.onMessage !== undefined) {
        this.cancel(stream, { code: grpc.status.UNAVAILABLE, details: reason });
      }
    }
    if (this.#streams.length === 0) this.destroy(reason);
  }

  /** The stream in flight with id `id`, if any. */
  #stream(id: number): StreamState | undefined {
    const streams = this.#streams;
    for (let i = 0; i < streams.length; i++) if (streams[i].id === id) return streams[i];
    return undefined;
  }

  /** Ends `stream` with `result` if it is in flight here; returns whether it was. */
  #finish(stream: StreamState, result: CheckResult): boolean {
    const streams = this.#streams;
    const at = streams.indexOf(stream);
    if (at < 0) return false;
    const last = streams.pop()!;
    if (last !== stream) streams[at] = last;
    this.#sweeper.untrack(stream);
    complete(stream, result);
    if (this.#draining && streams.length === 0) this.destroy("the connection went away");
    return true;
  }

  #read(chunk: Buffer): void {
    if (this.#destroyed) return;
    this.#reads++;
    const needed = this.#inLength + chunk.length;
    if (needed > this.#in.length) {
      const grown = Buffer.alloc(Math.max(needed, this.#in.length * 2));
      this.#in.copy(grown, 0, 0, this.#inLength);
      this.#in = grown;
    }
    chunk.copy(this.#in, this.#inLength);
    this.#inLength = needed;
    let at = 0;
    while (!this.#destroyed && this.#inLength - at >= FRAME_HEADER_BYTES) {
      const length = this.#in.readUIntBE(at, 3);
      if (length > MAX_FRAME_BYTES) {
        return this.#fail(FRAME_SIZE_ERROR, `a frame of ${length} bytes`);
      }
      if (this.#inLength - at < FRAME_HEADER_BYTES + length) break;
      const type = this.#in[at + 3];
      const flags = this.#in[at + 4];
      const streamId = this.#in.readUInt32BE(at + 5) & MAX_STREAM_ID;
      const payload = this.#in.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length);
      at += FRAME_HEADER_BYTES + length;
      this.#frame(type, flags, streamId, payload);
    }
    if (this.#destroyed) return;
    this.#in.copy(this.#in, 0, at, this.#inLength);
    this.#inLength -= at;
    // A big frame grew the buffer: give it back once it is read.
    if (this.#inLength === 0 && this.#in.length > 4_096) this.#in = Buffer.alloc(512);
  }

  #frame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.#block !== undefined && type !== CONTINUATION) {
      return this.#fail(PROTOCOL_ERROR, "a header block interrupted before its end");
    }
    switch (type) {
      case DATA:
        return this.#data(flags, streamId, payload);
      case HEADERS:
        return this.#headers(flags, streamId, payload);
      case CONTINUATION:
        return this.#continuation(flags, streamId, payload);
      case RST_STREAM:
        return this.#rstStream(streamId, payload);
      case SETTINGS:
        return this.#settings(flags, streamId, payload);
      case PING:
        if (payload.length !== 8 || streamId !== 0) {
          return this.#fail(FRAME_SIZE_ERROR, "a malformed PING");
        }
        if ((flags & ACK) === 0) this.#socket.write(frame(PING, ACK, 0, payload));
        return;
      case GOAWAY:
        return this.#goaway(payload);
      case WINDOW_UPDATE:
        return this.#windowUpdate(streamId, payload);
      case PUSH_PROMISE:
        return this.#fail(PROTOCOL_ERROR, "a PUSH_PROMISE, with push turned off");
      default:
        // PRIORITY and unknown frame types are ignored (§5.5).
        return;
    }
  }

  #data(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) return this.#fail(PROTOCOL_ERROR, "DATA on stream 0");
    // Flow control counts the whole payload, padding included (§6.9.1).
    this.#unacknowledged += payload.length;
    if (this.#unacknowledged >= MAX_FRAME_BYTES) {
      this.#socket.write(windowUpdate(0, this.#unacknowledged));
      this.#unacknowledged = 0;
    }
    const data = unpadded(flags, payload, 0);
    if (data === undefined) return this.#fail(PROTOCOL_ERROR, "DATA with invalid padding");
    const stream = this.#stream(streamId);
    if (stream === undefined) return; // reset by us already, or not ours: ignored
    if (stream.onMessage !== undefined) return this.#streamData(stream, flags, payload, data);
    if (stream.bodyBytes + data.length > MAX_ANSWER_BYTES) {
      return this.cancel(stream, {
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `an answer over ${MAX_ANSWER_BYTES} bytes`,
      });
    }
    if (data.length > 0) {
      if (stream.bodyBytes === 0 && isWholeMessage(data)) {
        stream.message = decodeMessage(data); // the usual answer: one message in one frame
      } else if (stream.message !== undefined) {
        stream.message = NOT_ONE_MESSAGE; // more after a whole message
      } else {
        stream.body = stream.body === undefined
          ? Buffer.from(data)
          : Buffer.concat([stream.body, data]);
      }
      stream.bodyBytes += data.length;
    }
    if (flags & END_STREAM) this.#finish(stream, answer(stream));
  }

  /**
   * DATA of a streaming call: each whole message goes to its `onMessage`, and the stream's
   * receive window is given back as the connection's is (it outlives the initial 64 KiB).
   */
  #streamData(stream: StreamState, flags: number, payload: Buffer, data: Buffer): void {
    stream.unacknowledged += payload.length;
    if (stream.unacknowledged >= MAX_FRAME_BYTES && (flags & END_STREAM) === 0) {
      this.#socket.write(windowUpdate(stream.id, stream.unacknowledged));
      stream.unacknowledged = 0;
    }
    let body = stream.body === undefined ? data : Buffer.concat([stream.body, data]);
    while (body.length >= 5) {
      const length = body.readUInt32BE(1);
      if (body[0] !== 0) {
        return this.cancel(stream, {
          code: grpc.status.INTERNAL,
          details: "a compressed message, and none was asked for",
        });
      }
      if (length > MAX_ANSWER_BYTES) {
        return this.cancel(stream, {
          code: grpc.status.RESOURCE_EXHAUSTED,
          details: `a message over ${MAX_ANSWER_BYTES} bytes`,
        });
      }
      if (body.length < 5 + length) break;
      stream.onMessage!(Buffer.from(body.subarray(5, 5 + length)));
      body = body.subarray(5 + length);
      // The listener may have ended the stream (its state is blank again then).
      if (stream.onMessage === undefined) return;
    }
    stream.body = body.length > 0 ? Buffer.from(body) : undefined;
    if (flags & END_STREAM) this.#finish(stream, answer(stream));
  }

  #headers(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) return this.#fail(PROTOCOL_ERROR, "HEADERS on stream 0");
    const fragment = unpadded(flags, payload, flags & PRIORITY_FLAG ? 5 : 0);
    if (fragment === undefined) return this.#fail(PROTOCOL_ERROR, "HEADERS with invalid padding");
    const endStream = (flags & END_STREAM) !== 0;
    if (flags & END_HEADERS) return this.#headerBlock(streamId, endStream, fragment);
    this.#block = { streamId, endStream, chunks: [Buffer.from(fragment)], bytes: fragment.length };
  }

  #continuation(flags: number, streamId: number, payload: Buffer): void {
    const block = this.#block;
    if (block === undefined || block.streamId !== streamId) {
      return this.#fail(PROTOCOL_ERROR, "a CONTINUATION out of place");
    }
    block.bytes += payload.length;
    if (block.bytes > MAX_ANSWER_BYTES) {
      return this.#fail(PROTOCOL_ERROR, `a header block over ${MAX_ANSWER_BYTES} bytes`);
    }
    block.chunks.push(Buffer.from(payload));
    if ((flags & END_HEADERS) === 0) return;
    this.#block = undefined;
    this.#headerBlock(streamId, block.endStream, Buffer.concat(block.chunks));
  }

  /** A whole header block: decoded (always: the HPACK state is the connection's), then used. */
  #headerBlock(streamId: number, endStream: boolean, block: Uint8Array): void {
    const stream = this.#stream(streamId);
    this.#decoding = stream;
    try {
      this.#hpack.decode(block, this.#onField);
    } catch (error) {
      if (!(error instanceof HpackError)) throw error;
      return this.#fail(COMPRESSION_ERROR, error.message);
    } finally {
      this.#decoding = undefined;
    }
    if (stream !== undefined && endStream) this.#finish(stream, answer(stream));
  }

  #rstStream(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) return this.#fail(FRAME_SIZE_ERROR, "a malformed RST_STREAM");
    const stream = this.#stream(streamId);
    if (stream === undefined) return;
    const code = payload.readUInt32BE(0);
    this.#finish(stream, {
      code: grpc.status.UNAVAILABLE,
      details: `the stream ended without a gRPC status (reset, code ${code})`,
    });
  }

  #settings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) return this.#fail(PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & ACK) {
      if (!this.#settingsAcked) {
        this.#settingsAcked = true;
        this.#hpack.setLimit(0);
      }
      return;
    }
    if (payload.length % 6 !== 0) return this.#fail(FRAME_SIZE_ERROR, "a malformed SETTINGS");
    for (let at = 0; at < payload.length; at += 6) {
      const id = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      if (id === SETTINGS_MAX_CONCURRENT_STREAMS) this.#maxStreams = value;
      else if (id === SETTINGS_INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) return this.#fail(FLOW_CONTROL_ERROR, "a window over 2^31-1");
        this.#peerInitialWindow = value;
      } else if (id === SETTINGS_MAX_FRAME_SIZE && (value < 16_384 || value > 16_777_215)) {
        return this.#fail(PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${value}`);
      }
      // The others bind what we send, and we send only small frames with literal headers.
    }
    this.#socket.write(SETTINGS_ACK);
    if (!this.#up) {
      this.#up = true;
      this.#events.onUp();
    }
  }

  #goaway(payload: Buffer): void {
    if (payload.length < 8) return this.#fail(FRAME_SIZE_ERROR, "a malformed GOAWAY");
    const lastStreamId = payload.readUInt32BE(0) & MAX_STREAM_ID;
    const code = payload.readUInt32BE(4);
    const reason = `the server closed the connection (GOAWAY, code ${code})`;
    // Streams past the last one the server took were not processed: they fail now (§6.8).
    for (const stream of [...this.#streams]) {
      if (stream.id > lastStreamId) {
        this.#finish(stream, { code: grpc.status.UNAVAILABLE, details: reason });
      }
    }
    this.#goingAway(reason);
  }

  #windowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) return this.#fail(FRAME_SIZE_ERROR, "a malformed WINDOW_UPDATE");
    if (streamId !== 0) return; // a stream's window: each request fits the initial one
    this.#sendWindow += payload.readUInt32BE(0) & MAX_WINDOW;
    if (this.#sendWindow > MAX_WINDOW) {
      return this.#fail(FLOW_CONTROL_ERROR, "the connection window over 2^31-1");
    }
  }
}

/** A frame: the 9-byte header, then `payload`. */
function frame(type: number, flags: number, streamId: number, payload: Uint8Array): Buffer {
  const bytes = Buffer.alloc(FRAME_HEADER_BYTES + payload.length);
  bytes.writeUIntBE(payload.length, 0, 3);
  bytes[3] = type;
  bytes[4] = flags;
  bytes.writeUInt32BE(streamId, 5);
  bytes.set(payload, FRAME_HEADER_BYTES);
  return bytes;
}

function settingsPayload(settings: [number, number][]): Buffer {
  const payload = Buffer.alloc(settings.length * 6);
  settings.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, i * 6);
    payload.writeUInt32BE(value, i * 6 + 2);
  });
  return payload;
}

function rstStream(streamId: number, code: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code, 0);
  return frame(RST_STREAM, 0, streamId, payload);
}

function windowUpdate(streamId: number, increment: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(increment, 0);
  return frame(WINDOW_UPDATE, 0, streamId, payload);
}

/** GOAWAY naming no stream of the server's as processed (it opens none: no push). */
function goaway(code: number): Buffer {
  const payload = Buffer.alloc(8);
  payload.writeUInt32BE(code, 4);
  return frame(GOAWAY, 0, 0, payload);
}

/**
 * The payload of a DATA or HEADERS frame without its padding (and the `skip` bytes of
 * HEADERS' priority fields); undefined when the padding does not fit (§6.1, §6.2).
 */
function unpadded(flags: number, payload: Buffer, skip: number): Buffer | undefined {
  let start = skip;
  let end = payload.length;
  if (flags & PADDED) {
    if (payload.length < 1) return undefined;
    start += 1;
    end -= payload[0];
  }
  return start <= end ? payload.subarray(start, end) : undefined;
}

/** gRPC's message framing: uncompressed flag, 4-byte big-endian length, message. */
function framed(message: Buffer): Buffer {
  const bytes = Buffer.alloc(5 + message.length);
  bytes.writeUInt32BE(message.length, 1);
  message.copy(bytes, 5);
  return bytes;
}

/**
 * The result of a finished stream: trailers (or a trailers-only answer), then a Check's body; a
 * streaming call that ended with OK is `{ code: OK }`.
 */
function answer(stream: StreamState): CheckResult {
  const code = stream.grpcStatus;
  if (code === "0" && stream.onMessage !== undefined) {
    return { code: grpc.status.OK, details: "the server ended the stream" };
  }
  if (code === undefined) {
    const httpStatus = stream.httpStatus;
    return {
      code: grpc.status.UNAVAILABLE,
      details: httpStatus !== undefined && httpStatus !== "200"
        ? `HTTP status ${httpStatus}, not a gRPC answer`
        : "the stream ended without a gRPC status",
    };
  }
  if (code !== "0") {
    const message = stream.grpcMessage;
    const number = Number(code);
    return {
      code: Number.isInteger(number) && number > 0 && number <= 16 ? number : grpc.status.UNKNOWN,
      details: message !== undefined ? percentDecoded(message) : statusName(number),
    };
  }
  return stream.message ?? (stream.body ? decodeMessage(stream.body) : NOT_ONE_MESSAGE);
}

const NOT_ONE_MESSAGE: CheckResult = {
  code: grpc.status.INTERNAL,
  details: "the answer is not one uncompressed message",
};

/** Whether `bytes` hold exactly one uncompressed gRPC message. */
function isWholeMessage(bytes: Buffer): boolean {
  return bytes.length >= 5 && bytes[0] === 0 && bytes.readUInt32BE(1) === bytes.length - 5;
}

/** The results of the usual answers, one object each (a check allocates none for them). */
const STATUS_RESULTS: readonly CheckResult[] = (
  ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"] as const
).map((status) => ({ status }));

/** The `HealthCheckResponse` framed in `bytes`, or why it is not one. */
function decodeMessage(bytes: Buffer): CheckResult {
  if (!isWholeMessage(bytes)) return NOT_ONE_MESSAGE;
  // The usual answers, read here: empty (status 0, the default), or field 1 with a known status.
  if (bytes.length === 5) return STATUS_RESULTS[0];
  if (bytes.length === 7 && bytes[5] === 0x08 && bytes[6] < STATUS_RESULTS.length) {
    return STATUS_RESULTS[bytes[6]];
  }
  try {
    const response = checkMethod.responseDeserialize(bytes.subarray(5)) as HealthCheckResponse;
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
