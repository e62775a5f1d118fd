/**
 * The balancer's active health checks: every member of the {@linkcode ServerSet} is asked
 * `grpc.health.v1.Health/Check` every interval, with a deadline, and ejected from the picks on
 * the first failure; it is readmitted on its first success.
 *
 * A periodic Check (rather than only a `Watch` stream) is what catches a hung server: a process
 * stopped with SIGSTOP keeps its connections open, so a stream would stay silent while the
 * deadline of the next Check fails it. A dead server is noticed without waiting for its next
 * check: its probe's connection closes, which triggers a check at once, and that one is refused
 * (each server has one connection of its own, `lib/health/health_probe.ts`). A new member waits for
 * its first successful check before it is picked (Envoy's `ignore_new_hosts_until_first_hc`),
 * which costs one round trip and saves naming a server that is already gone. A server without
 * the health service (an original backend answers UNIMPLEMENTED) is alive by that answer, and
 * counts as healthy.
 *
 * Worst case to eject: a dead server, one round trip after its connection closes (a host that
 * vanished without closing it: `intervalMs + timeoutMs`); a hung one `intervalMs + timeoutMs`.
 *
 * At scale the checks cost the balancer (and every server) in proportion to their rate:
 * 1,000 servers every 250 ms is 4,000 checks per second. So the total rate is capped at
 * `maxChecksPerS` (default 1,000/s, `--health-max-checks-per-s`): with more than
 * `maxChecksPerS × intervalMs / 1000` servers (250 by default), each server's interval
 * stretches to `servers / maxChecksPerS` seconds ({@linkcode checkIntervalMs}): 1 s at 1,000
 * servers, so a hung one goes within 1.5 s (a dead one still at once). Small sets keep
 * `intervalMs` as it is. A new server's first check is never delayed (it decides when the
 * server is first picked), and each server's checks keep their own schedule (one ticker looks
 * for those due), so they spread over the interval as the servers joined. The cap can be low
 * because a dead server does not wait for its next check (its closed connection triggers one),
 * while every check costs the balancer CPU, and a busy balancer stalls, which the sweeper's rule
 * for late sweeps has to absorb.
 *
 * The deadlines of the checks in flight are timed by one {@linkcode ProbeSweeper} that the
 * checker makes, shares with its probes and stops with them.
 *
 * The checks also carry load, as gRPC's ORCA (gRFC A51) tells it: a check's answer may hold a
 * per-call report (ours do), and a server whose answers hold none is asked once per connection
 * for out-of-band reports on the same connection (`OpenRcaService`, as grpc-go and grpc-java
 * serve it). Either goes into the set as the server's load, below its own `ReportLoad`.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { getLogger } from "@logtape/logtape";
import { readOrcaLoad } from "../wire/orca.ts";
import type { Buffer } from "node:buffer";
import { type CheckCallback, type CheckResult, HealthProbe } from "./health_probe.ts";
import { ProbeSweeper } from "./probe_sweeper.ts";
import type { BalancerMetrics } from "../ops/metrics.ts";
import type { ServerSet } from "../picking/server_set.ts";
import { statusName } from "../wire/status.ts";
import type { TlsConfig } from "../wire/tls.ts";

const log = getLogger(["lb", "health"]);

/** Default time between the end of one check of a server and the start of the next. */
export const DEFAULT_HEALTH_INTERVAL_MS = 250;
/** Default deadline of one check. */
export const DEFAULT_HEALTH_TIMEOUT_MS = 500;
/** Default cap on the checks per second over the whole set. */
export const DEFAULT_MAX_CHECKS_PER_S = 1_000;
/**
 * Interval of the out-of-band ORCA reports asked of a server whose check answers carry none: a
 * second, as our backends serve at most (grpc-go and grpc-java take any).
 */
export const ORCA_OOB_INTERVAL_MS = 1_000;

/**
 * Time between two checks of one server while `servers` are checked: `intervalMs`, stretched
 * so that the whole set costs at most `maxChecksPerS` checks per second.
 */
export function checkIntervalMs(
  servers: number,
  intervalMs: number,
  maxChecksPerS: number,
): number {
  return Math.max(intervalMs, (1_000 * servers) / maxChecksPerS);
}

/** Options of {@linkcode HealthChecker}. */
export interface HealthCheckerOptions {
  set: ServerSet;
  /** @default {DEFAULT_HEALTH_INTERVAL_MS} */
  intervalMs?: number;
  /** @default {DEFAULT_HEALTH_TIMEOUT_MS} */
  timeoutMs?: number;
  /** Cap on the checks per second over the whole set. @default {DEFAULT_MAX_CHECKS_PER_S} */
  maxChecksPerS?: number;
  /** Service name asked about; `""` is the whole server. @default {""} */
  service?: string;
  /** TLS of the servers' ports. @default {plaintext} */
  tls?: TlsConfig;
  /** Where ejections, readmissions and ORCA reports are counted; none: not counted. */
  metrics?: Pick<BalancerMetrics, "healthEjections" | "healthReadmissions" | "orcaReports">;
}

/**
 * How often the checker looks for probes due a check: one timer for the whole set rather than
 * one per check, whose making and clearing at the checker's rate costs memory the balancer then
 * holds. A check then starts up to this much after its interval.
 */
const TICK_MS = 20;

interface Probe {
  address: string;
  connection: HealthProbe;
  /** Its next check is due at this time (performance.now()). */
  nextAt: number;
  /** A check is in flight. */
  running: boolean;
  /** Result of the last check; undefined before the first one ends. */
  healthy: boolean | undefined;
  closed: boolean;
  /** Settles when the first check has ended (or the probe closed). */
  checked: Promise<void>;
  onChecked: () => void;
  /** Takes each check's result (one function per probe, not one per check). */
  onResult: CheckCallback;
  /**
   * The server's out-of-band ORCA stream: `none` (opened after the next passing check that
   * carried no load report), `open`, or `unsupported` (it answered UNIMPLEMENTED; asked again
   * on a new connection, which may be a new server).
   */
  oob: "none" | "open" | "unsupported";
  /** Takes each out-of-band report. */
  onOrca: (report: Buffer) => void;
  /** Takes the end of the out-of-band stream. */
  onOrcaEnd: (result: CheckResult) => void;
}

/** Checks every member of a set, ejecting and readmitting them. */
export class HealthChecker {
  #set: ServerSet;
  #intervalMs: number;
  #timeoutMs: number;
  #maxChecksPerS: number;
  #service: string;
  #tls: TlsConfig | undefined;
  #probes = new Map<string, Probe>();
  #unsubscribe: (() => void) | undefined;
  #metrics: HealthCheckerOptions["metrics"];
  #ticker: ReturnType<typeof setInterval> | undefined;
  /** Times the checks in flight of every probe. */
  #sweeper = new ProbeSweeper();

  /** Creates a checker; {@linkcode start} begins checking. */
  constructor(options: HealthCheckerOptions) {
    this.#set = options.set;
    this.#intervalMs = options.intervalMs ?? DEFAULT_HEALTH_INTERVAL_MS;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS;
    this.#maxChecksPerS = options.maxChecksPerS ?? DEFAULT_MAX_CHECKS_PER_S;
    this.#service = options.service ?? "";
    this.#tls = options.tls;
    this.#metrics = options.metrics;
  }

  /** Follows the set's members: holds new ones out of the picks until their first check. */
  start(): void {
    this.#unsubscribe = this.#set.onMembership((address, joined) => {
      if (joined) this.#add(address);
      else this.#remove(address);
    });
    for (const address of this.#set.addresses()) this.#add(address);
    this.#ticker = setInterval(() => this.#tick(), TICK_MS);
  }

  /**
   * Resolves once `address` has had its first check (at once for a server checked before, or
   * not a member), so a caller can wait until a new server is in the picks, or known not to be.
   */
  whenChecked(address: string): Promise<void> {
    return this.#probes.get(address)?.checked ?? Promise.resolve();
  }

  /**
   * Sends one more check to `address` on its probe's connection, for the load report its answer
   * carries (Prequal's probes): `onResult` gets the result and the report, and the result counts
   * nothing for health. False when `address` is not being checked.
   */
  probeLoad(address: string, timeoutMs: number, onResult: CheckCallback): boolean {
    const probe = this.#probes.get(address);
    if (probe === undefined || probe.closed) return false;
    probe.connection.checkThen(this.#service, timeoutMs, onResult);
    return true;
  }

  /** Stops every probe, and the sweeper that times their checks. */
  stop(): void {
    this.#unsubscribe?.();
    clearInterval(this.#ticker);
    this.#ticker = undefined;
    for (const address of [...this.#probes.keys()]) this.#remove(address);
    this.#sweeper.stop();
  }

  #add(address: string): void {
    if (this.#probes.has(address)) return;
    this.#set.setHealthy(address, false);
    let onChecked = () => {};
    const checked = new Promise<void>((resolve) => onChecked = resolve);
    const probe: Probe = {
      address,
      connection: new HealthProbe(address, {
        tls: this.#tls,
        sweeper: this.#sweeper,
        // A lost connection is checked at once: a dead server fails that check (refused), a
        // restarted one passes it on a new connection.
        onDisconnect: () => {
          if (probe.oob === "unsupported") probe.oob = "none";
          this.#checkNow(probe);
        },
      }),
      nextAt: Infinity,
      running: false,
      healthy: undefined,
      closed: false,
      checked,
      onChecked,
      onResult: (result, loadReport) => {
        const healthy = this.#checked(probe, result);
        if (probe.closed) return;
        if (loadReport !== undefined) this.#recordLoad(address, loadReport, "health_check");
        else if (healthy && probe.oob === "none") this.#streamOrca(probe);
      },
      oob: "none",
      onOrca: (report) => {
        if (!probe.closed) this.#recordLoad(address, report, "out_of_band");
      },
      onOrcaEnd: (result) => {
        if (probe.closed) return;
        probe.oob = "code" in result && result.code === grpc.status.UNIMPLEMENTED
          ? "unsupported"
          : "none";
        log.debug("Server {address} ended its ORCA stream: {details}", {
          address,
          details: "code" in result ? `${statusName(result.code)}: ${result.details}` : "",
        });
      },
    };
    this.#probes.set(address, probe);
    this.#run(probe);
  }

  #remove(address: string): void {
    const probe = this.#probes.get(address);
    if (probe === undefined) return;
    this.#probes.delete(address);
    probe.closed = true;
    probe.onChecked();
    probe.connection.close();
  }

  /** Checks `probe` now unless a check is in flight. */
  #checkNow(probe: Probe): void {
    if (probe.closed || probe.running) return;
    this.#run(probe);
  }

  /** Starts the checks that are due. */
  #tick(): void {
    this.#tickAt = performance.now();
    // forEach with one function made once: a for-of over the map allocates an iterator result
    // per probe at every tick, which V8 comes to allocate in its old generation (pretenuring),
    // which then grows until a full GC.
    this.#probes.forEach(this.#startIfDue);
  }

  #tickAt = 0;
  #startIfDue = (probe: Probe): void => {
    if (!probe.running && this.#tickAt >= probe.nextAt) this.#run(probe);
  };

  #run(probe: Probe): void {
    probe.running = true;
    probe.nextAt = Infinity;
    probe.connection.checkThen(this.#service, this.#timeoutMs, probe.onResult);
  }

  /** Takes a check's result; returns whether it passed. */
  #checked(probe: Probe, result: CheckResult): boolean {
    probe.running = false;
    let reason = "";
    if ("status" in result) {
      if (result.status !== "SERVING") reason = `it reports ${result.status}`;
    } else if (result.code !== grpc.status.UNIMPLEMENTED) {
      // UNIMPLEMENTED (no health service, an original backend): it answered, so it is alive.
      reason = `${statusName(result.code)}: ${result.details}`;
    }
    if (probe.closed) return false;
    this.#record(probe, reason === "", reason);
    probe.onChecked();
    probe.nextAt = performance.now() +
      checkIntervalMs(this.#probes.size, this.#intervalMs, this.#maxChecksPerS);
    return reason === "";
  }

  /**
   * Asks a server whose check answers carry no load report for its reports out of band, on the
   * probe's connection: how a grpc-go or grpc-java server with ORCA (`orca.Register`,
   * `OrcaServiceImpl`) tells its load, with no per-call report on its health service.
   */
  #streamOrca(probe: Probe): void {
    probe.oob = "open";
    probe.connection.streamLoad(ORCA_OOB_INTERVAL_MS, probe.onOrca, probe.onOrcaEnd);
  }

  /**
   * Records an ORCA load report (the bytes, or base64 from a trailer): how a server that sends no
   * `ReportLoad` (a grpc-go or grpc-java one) reports; the set prefers a server's own reports.
   */
  #recordLoad(
    address: string,
    report: string | Buffer,
    source: "health_check" | "out_of_band",
  ): void {
    const load = readOrcaLoad(report);
    if (load === undefined) return;
    this.#set.reportOrca(address, load);
    this.#metrics?.orcaReports.inc({ source });
  }

  #record(probe: Probe, healthy: boolean, reason: string): void {
    const was = probe.healthy;
    probe.healthy = healthy;
    this.#set.setHealthy(probe.address, healthy);
    if (healthy && was === undefined) {
      log.info("Server {address} admitted: its first health check passes", {
        address: probe.address,
      });
    } else if (healthy && was === false) {
      this.#metrics?.healthReadmissions.inc();
      log.info("Server {address} readmitted: its health check passes", { address: probe.address });
    } else if (!healthy && was !== false) {
      this.#metrics?.healthEjections.inc();
      log.warn("Server {address} ejected: health check failed ({reason})", {
        address: probe.address,
        reason,
      });
    }
  }
}
