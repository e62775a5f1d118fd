/**
 * Sends the probes a probing policy (`prequal`) asks for, and hands back the answers. A probe is
 * one more `grpc.health.v1.Health/Check` to the server, over a {@linkcode LoadTransport}: the
 * balancer's health checker (the connection it already holds to each server), or a watch
 * client's own probes (`lib/client/server_probes.ts`). The backend's answer carries an ORCA load
 * report (`lib/wire/orca.ts`) with its requests in flight and latency estimate. The probes a burst of picks asks for are sent once
 * the burst's synchronous work is done (a microtask), never from the pick itself.
 *
 * What an answer means to the policy:
 * - a report with Prequal's signals: an answer;
 * - an answer without them, or UNIMPLEMENTED (an original backend, or one with no health
 *   service): the server cannot be probed, and gets its share by count;
 * - any other failure (deadline, connection): that server's answer leaves the pool.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { Picker } from "./picker.ts";
import { decodeOrcaReport, prequalSignals } from "../wire/orca.ts";

/** How long a probe may take by default (ms): an answer later than the pool keeps one is moot. */
export const DEFAULT_PROBE_TIMEOUT_MS = 1_000;

/** Probes on their way at once by default: the pool's size (prequal's default). */
export const DEFAULT_MAX_PROBES_IN_FLIGHT = 16;

/** What the prober counts (for `/metrics` and tests). */
export interface ProbeCounts {
  sent: number;
  answered: number;
  /** Answers from servers that cannot be probed (no report, or UNIMPLEMENTED). */
  silent: number;
  failed: number;
  /**
   * Probes not sent: the server had one on its way, as many as allowed were, or the transport
   * does not hold the server (it just left).
   */
  skipped: number;
}

/** A server's last answer. */
export interface ProbeAnswer {
  rif: number;
  /** -1 before the server completed a task. */
  latencyMs: number;
  /** `performance.now()` when it came. */
  atMs: number;
}

/** A health check's result, as a transport hands it over: a serving status, or a gRPC code. */
export type ProbeResult = { status: string } | { code: number; details: string };

/** Takes a check's result and the ORCA load report (base64) its answer carried, if any. */
export type ProbeCallback = (result: ProbeResult, loadReport?: string) => void;

/**
 * Sends one health check to a server for its load report; false when it cannot (the server is
 * not one the transport holds). The balancer's `HealthChecker` is one.
 */
export interface LoadTransport {
  probeLoad(address: string, timeoutMs: number, onResult: ProbeCallback): boolean;
}

/** Options of {@linkcode LoadProber}. */
export interface LoadProberOptions {
  picker: Picker;
  transport: LoadTransport;
  /** @default {DEFAULT_PROBE_TIMEOUT_MS} */
  timeoutMs?: number;
  /** Probes on their way at once, at most (besides one per server). */
  maxInFlight?: number;
}

/** Sends a probing policy's probes over a transport, and hands the answers to the picker. */
export class LoadProber {
  readonly #picker: Picker;
  readonly #transport: LoadTransport;
  readonly #timeoutMs: number;
  #scheduled = false;
  #closed = false;
  readonly counts: ProbeCounts = { sent: 0, answered: 0, silent: 0, failed: 0, skipped: 0 };
  /** Servers with a probe on its way. */
  readonly #inFlight = new Set<string>();
  readonly #maxInFlight: number;
  /** Each server's last answer, by address (for `ListServers` and the dashboard). */
  readonly #answers = new Map<string, ProbeAnswer>();

  /** Starts taking the picker's probes. */
  constructor(options: LoadProberOptions) {
    this.#picker = options.picker;
    this.#transport = options.transport;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    this.#maxInFlight = options.maxInFlight ?? DEFAULT_MAX_PROBES_IN_FLIGHT;
    this.#picker.onProbes = this.#schedule;
  }

  /** The last answer of the server at `address`, if it ever answered. */
  answerOf(address: string): Readonly<ProbeAnswer> | undefined {
    return this.#answers.get(address);
  }

  /** Stops taking probes; answers still on their way are dropped. */
  close(): void {
    this.#closed = true;
    this.#picker.onProbes = undefined;
  }

  /** After a pick: sends what was asked for once the current burst of picks is done. */
  #schedule = (): void => {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(this.#send);
  };

  #send = (): void => {
    this.#scheduled = false;
    if (this.#closed) return;
    for (let id = this.#picker.takeProbe(); id >= 0; id = this.#picker.takeProbe()) {
      const address = this.#picker.addressOf(id);
      // One probe in flight per server, and a pool's worth in all: however fast the picks come
      // (a lookup storm), probing costs at most that many round trips at a time.
      const sent = address !== undefined && !this.#inFlight.has(address) &&
        this.#inFlight.size < this.#maxInFlight &&
        this.#transport.probeLoad(address, this.#timeoutMs, (result, report) => {
          this.#inFlight.delete(address);
          this.#answered(id, address, result, report);
        });
      if (sent) {
        this.#inFlight.add(address);
        this.counts.sent++;
      } else this.counts.skipped++;
    }
  };

  #answered(id: number, address: string, result: ProbeResult, report: string | undefined): void {
    if (this.#closed) return;
    if ("status" in result || result.code === grpc.status.UNIMPLEMENTED) {
      const signals = report === undefined ? undefined : readSignals(report);
      if (signals !== undefined) {
        this.counts.answered++;
        this.#remember(address, signals.rif, signals.latencyMs);
        return this.#picker.probeAnswered(id, signals.rif, signals.latencyMs);
      }
      this.counts.silent++;
      return this.#picker.probeFailed(id, true);
    }
    this.counts.failed++;
    this.#picker.probeFailed(id, false);
  }

  #remember(address: string, rif: number, latencyMs: number): void {
    const answer = this.#answers.get(address);
    const atMs = performance.now();
    if (answer !== undefined) {
      answer.rif = rif;
      answer.latencyMs = latencyMs;
      answer.atMs = atMs;
      return;
    }
    // Servers that left are forgotten when the map outgrows the live set.
    const live = this.#picker.snapshot.servers;
    if (this.#answers.size > 2 * live.length + 16) {
      const keep = new Set(live.map((s) => s.address));
      for (const known of this.#answers.keys()) if (!keep.has(known)) this.#answers.delete(known);
    }
    this.#answers.set(address, { rif, latencyMs, atMs });
  }
}

/** Prequal's signals in a base64 ORCA report, or undefined if it has none or does not decode. */
function readSignals(base64: string): { rif: number; latencyMs: number } | undefined {
  try {
    return prequalSignals(decodeOrcaReport(Buffer.from(base64, "base64")));
  } catch {
    return undefined;
  }
}
