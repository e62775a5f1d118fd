/**
 * ORCA load reports (`xds.data.orca.v3.OrcaLoadReport`), the load a gRPC server tells its
 * callers in a call's trailers (`endpoint-load-metrics-bin`, gRPC A51). Backends attach one to
 * every health `Check` answer; Prequal's two signals travel as named metrics
 * ({@linkcode RIF_METRIC}, {@linkcode LATENCY_METRIC}). Only the fields used here are written
 * and read, by hand: a report is a few dozen bytes, and the balancer reads one per probe.
 *
 * @module
 */
import { Buffer } from "node:buffer";

/** The trailer an ORCA per-call load report travels in (binary, base64 on the wire). */
export const ORCA_TRAILER = "endpoint-load-metrics-bin";
/** Named metric: the server's requests in flight. */
export const RIF_METRIC = "rif";
/** Named metric: the latency (ms) a request arriving now should expect. */
export const LATENCY_METRIC = "latency_ms";

/** The fields of an ORCA load report written and read here. */
export interface OrcaReport {
  /** `cpu_utilization` (1): CPU use, 0 to 1 (more with several cores). */
  cpuUtilization?: number;
  /** `rps_fractional` (6): requests per second. */
  rpsFractional?: number;
  /** `eps` (7): errors per second. */
  eps?: number;
  /** `named_metrics` (8): free-form metrics by name. */
  namedMetrics?: Record<string, number>;
  /** `application_utilization` (9): the application's own utilization, 0 to 1. */
  applicationUtilization?: number;
}

const CPU_UTILIZATION = 1;
const RPS_FRACTIONAL = 6;
const EPS = 7;
const NAMED_METRICS = 8;
const APPLICATION_UTILIZATION = 9;
const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;

/** Encodes `report` as an `OrcaLoadReport` message. */
export function encodeOrcaReport(report: OrcaReport): Buffer {
  const parts: number[] = [];
  const double = (field: number, value: number | undefined) => {
    if (value === undefined || !Number.isFinite(value)) return;
    parts.push((field << 3) | FIXED64, ...doubleBytes(value));
  };
  double(CPU_UTILIZATION, report.cpuUtilization);
  double(RPS_FRACTIONAL, report.rpsFractional);
  double(EPS, report.eps);
  double(APPLICATION_UTILIZATION, report.applicationUtilization);
  for (const [name, value] of Object.entries(report.namedMetrics ?? {})) {
    if (!Number.isFinite(value)) continue;
    const key = [...Buffer.from(name, "utf8")];
    // A map entry: key (1, string) and value (2, double).
    const entry = [(1 << 3) | LENGTH_DELIMITED, ...varint(key.length), ...key];
    entry.push((2 << 3) | FIXED64, ...doubleBytes(value));
    parts.push((NAMED_METRICS << 3) | LENGTH_DELIMITED, ...varint(entry.length), ...entry);
  }
  return Buffer.from(parts);
}

/**
 * Decodes an `OrcaLoadReport`, keeping the fields of {@linkcode OrcaReport} and skipping the
 * rest; throws a `RangeError` when the bytes are not a well-formed message.
 */
export function decodeOrcaReport(bytes: Uint8Array): OrcaReport {
  const report: OrcaReport = {};
  const reader = new Reader(bytes);
  while (!reader.done) {
    const tag = reader.varint();
    const field = tag >>> 3;
    const type = tag & 7;
    if (type === FIXED64 && field === CPU_UTILIZATION) report.cpuUtilization = reader.double();
    else if (type === FIXED64 && field === RPS_FRACTIONAL) report.rpsFractional = reader.double();
    else if (type === FIXED64 && field === EPS) report.eps = reader.double();
    else if (type === FIXED64 && field === APPLICATION_UTILIZATION) {
      report.applicationUtilization = reader.double();
    } else if (type === LENGTH_DELIMITED && field === NAMED_METRICS) {
      const entry = new Reader(reader.bytes());
      let name = "";
      let value = 0;
      while (!entry.done) {
        const entryTag = entry.varint();
        if (entryTag === ((1 << 3) | LENGTH_DELIMITED)) {
          name = new TextDecoder().decode(entry.bytes());
        } else if (entryTag === ((2 << 3) | FIXED64)) value = entry.double();
        else entry.skip(entryTag & 7);
      }
      (report.namedMetrics ??= {})[name] = value;
    } else reader.skip(type);
  }
  return report;
}

/**
 * The load an ORCA report tells, as the balancer stores a report, or `undefined` when it tells
 * no utilization. As gRPC's weighted round robin (gRFC A58) reads it: the application's
 * utilization when given, else the CPU's; requests in flight from the `rif` named metric.
 */
export function orcaLoad(
  report: OrcaReport,
): { cpuLoad: number; inFlight: number; qps: number; eps: number } | undefined {
  const utilization = report.applicationUtilization! > 0
    ? report.applicationUtilization!
    : report.cpuUtilization;
  if (utilization === undefined || !(utilization >= 0) || !Number.isFinite(utilization)) {
    return undefined;
  }
  const rate = (value: number | undefined) => value! >= 0 && Number.isFinite(value) ? value! : 0;
  const rif = report.namedMetrics?.[RIF_METRIC];
  return {
    cpuLoad: Math.min(100, utilization * 100),
    inFlight: rif! >= 0 && Number.isFinite(rif) ? Math.round(rif!) : 0,
    qps: rate(report.rpsFractional),
    eps: rate(report.eps),
  };
}

/**
 * {@linkcode orcaLoad} of a report (its bytes, or base64 as a trailer carries it), or `undefined`
 * when it tells none or does not decode.
 */
export function readOrcaLoad(report: string | Uint8Array): ReturnType<typeof orcaLoad> {
  try {
    return orcaLoad(
      decodeOrcaReport(typeof report === "string" ? Buffer.from(report, "base64") : report),
    );
  } catch {
    return undefined;
  }
}

/**
 * The interval an `OrcaLoadReportRequest` (`xds.service.orca.v3`) asks for, in ms: its
 * `report_interval` (1, a Duration of seconds (1) and nanos (2)); 0 when it asks none. Throws a
 * `RangeError` when the bytes are not a well-formed message.
 */
export function decodeOrcaRequestInterval(bytes: Uint8Array): number {
  const reader = new Reader(bytes);
  let intervalMs = 0;
  while (!reader.done) {
    const tag = reader.varint();
    if (tag === ((1 << 3) | LENGTH_DELIMITED)) {
      const duration = new Reader(reader.bytes());
      let seconds = 0;
      let nanos = 0;
      while (!duration.done) {
        const durationTag = duration.varint();
        if (durationTag === ((1 << 3) | VARINT)) seconds = duration.varint();
        else if (durationTag === ((2 << 3) | VARINT)) nanos = duration.varint();
        else duration.skip(durationTag & 7);
      }
      intervalMs = seconds * 1_000 + nanos / 1e6;
    } else reader.skip(tag & 7);
  }
  return intervalMs;
}

/** Encodes an `OrcaLoadReportRequest` asking for a report every `intervalMs`. */
export function encodeOrcaRequest(intervalMs: number): Buffer {
  const seconds = Math.floor(intervalMs / 1_000);
  const nanos = Math.round((intervalMs - seconds * 1_000) * 1e6);
  const duration = [
    ...(seconds > 0 ? [(1 << 3) | VARINT, ...varint(seconds)] : []),
    ...(nanos > 0 ? [(2 << 3) | VARINT, ...varint(nanos)] : []),
  ];
  return Buffer.from([(1 << 3) | LENGTH_DELIMITED, ...varint(duration.length), ...duration]);
}

/** Prequal's signals in an ORCA report, if both are there and sane. */
export function prequalSignals(report: OrcaReport): { rif: number; latencyMs: number } | undefined {
  const rif = report.namedMetrics?.[RIF_METRIC];
  const latencyMs = report.namedMetrics?.[LATENCY_METRIC] ?? -1;
  if (rif === undefined || !(rif >= 0) || !Number.isFinite(latencyMs)) return undefined;
  return { rif, latencyMs };
}

function doubleBytes(value: number): number[] {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(value);
  return [...b];
}

function varint(value: number): number[] {
  const out: number[] = [];
  while (value > 0x7f) {
    out.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  out.push(value);
  return out;
}

/** Reads protobuf wire format from a byte array, bounds-checked. */
class Reader {
  #bytes: Uint8Array;
  #at = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  get done(): boolean {
    return this.#at >= this.#bytes.length;
  }

  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const byte = this.#take(1)[0];
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw new RangeError("Cannot decode ORCA report as a varint is too long");
  }

  double(): number {
    const b = this.#take(8);
    return new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, true);
  }

  bytes(): Uint8Array {
    return this.#take(this.varint());
  }

  skip(type: number): void {
    if (type === 0) this.varint();
    else if (type === FIXED64) this.#take(8);
    else if (type === LENGTH_DELIMITED) this.bytes();
    else if (type === 5) this.#take(4);
    else throw new RangeError(`Cannot decode ORCA report as wire type ${type} is not supported`);
  }

  #take(n: number): Uint8Array {
    if (this.#at + n > this.#bytes.length) {
      throw new RangeError("Cannot decode ORCA report as it ends inside a field");
    }
    const out = this.#bytes.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }
}
