/** ORCA load reports: written and read by hand, checked against protobufjs and the real schema. */
import assert from "node:assert/strict";
import protobuf from "protobufjs";
import {
  decodeOrcaReport,
  decodeOrcaRequestInterval,
  encodeOrcaReport,
  encodeOrcaRequest,
  LATENCY_METRIC,
  orcaLoad,
  prequalSignals,
  readOrcaLoad,
  RIF_METRIC,
} from "../lib/wire/orca.ts";

/** `xds.data.orca.v3.OrcaLoadReport` as cncf/xds defines it (validation rules left out). */
const SCHEMA = `syntax = "proto3";
package xds.data.orca.v3;
message OrcaLoadReport {
  double cpu_utilization = 1;
  double mem_utilization = 2;
  uint64 rps = 3;
  map<string, double> request_cost = 4;
  map<string, double> utilization = 5;
  double rps_fractional = 6;
  double eps = 7;
  map<string, double> named_metrics = 8;
  double application_utilization = 9;
}`;
const OrcaLoadReport = protobuf.parse(SCHEMA, { keepCase: true }).root
  .lookupType("xds.data.orca.v3.OrcaLoadReport");

Deno.test("encodeOrcaReport writes what protobufjs reads as an OrcaLoadReport", () => {
  const bytes = encodeOrcaReport({
    cpuUtilization: 0.5,
    rpsFractional: 120.25,
    eps: 0,
    namedMetrics: { [RIF_METRIC]: 3, [LATENCY_METRIC]: 41.5 },
  });
  const decoded = OrcaLoadReport.toObject(OrcaLoadReport.decode(bytes));
  assert.deepEqual(decoded, {
    cpu_utilization: 0.5,
    rps_fractional: 120.25,
    eps: 0,
    named_metrics: { rif: 3, latency_ms: 41.5 },
  });
});

Deno.test("decodeOrcaReport reads protobufjs's encoding, skipping fields it does not keep", () => {
  const message = OrcaLoadReport.fromObject({
    cpu_utilization: 0.25,
    mem_utilization: 0.75,
    rps: 7,
    utilization: { gpu: 0.5 },
    eps: 2,
    named_metrics: { rif: 9, latency_ms: 12 },
    application_utilization: 0.6,
  });
  const report = decodeOrcaReport(OrcaLoadReport.encode(message).finish());
  assert.deepEqual(report, {
    cpuUtilization: 0.25,
    eps: 2,
    namedMetrics: { rif: 9, latency_ms: 12 },
    applicationUtilization: 0.6,
  });
  assert.deepEqual(prequalSignals(report), { rif: 9, latencyMs: 12 });
});

Deno.test("prequalSignals needs a RIF; a report without latency yet says -1", () => {
  assert.equal(prequalSignals({ cpuUtilization: 0.3 }), undefined);
  assert.equal(prequalSignals({ namedMetrics: { rif: -1 } }), undefined);
  assert.deepEqual(prequalSignals({ namedMetrics: { rif: 0 } }), { rif: 0, latencyMs: -1 });
});

Deno.test("decodeOrcaReport refuses bytes that end inside a field", () => {
  const bytes = encodeOrcaReport({ namedMetrics: { rif: 1 } });
  assert.throws(() => decodeOrcaReport(bytes.subarray(0, bytes.length - 3)), /ends inside a field/);
});

Deno.test("encodeOrcaReport writes application_utilization, and decodeOrcaReport reads it back", () => {
  const bytes = encodeOrcaReport({ cpuUtilization: 0.5, applicationUtilization: 0.3 });
  assert.deepEqual(OrcaLoadReport.toObject(OrcaLoadReport.decode(bytes)), {
    cpu_utilization: 0.5,
    application_utilization: 0.3,
  });
  assert.deepEqual(decodeOrcaReport(bytes), { cpuUtilization: 0.5, applicationUtilization: 0.3 });
});

Deno.test("orcaLoad reads load as gRPC's weighted round robin does: application utilization first, else CPU", () => {
  assert.deepEqual(
    orcaLoad({ cpuUtilization: 0.9, applicationUtilization: 0.3, rpsFractional: 12, eps: 1 }),
    { cpuLoad: 30, inFlight: 0, qps: 12, eps: 1 },
  );
  assert.deepEqual(
    orcaLoad({ cpuUtilization: 0.42, namedMetrics: { [RIF_METRIC]: 3 } }),
    { cpuLoad: 42, inFlight: 3, qps: 0, eps: 0 },
  );
  // No utilization (Prequal's signals only), or nonsense: no load.
  assert.equal(orcaLoad({ namedMetrics: { [RIF_METRIC]: 3 } }), undefined);
  assert.equal(orcaLoad({ cpuUtilization: -1 }), undefined);
  assert.equal(orcaLoad({ cpuUtilization: NaN }), undefined);
  // A rate that makes no sense counts as none; a utilization past 1 (several cores) as 100 %.
  assert.deepEqual(orcaLoad({ cpuUtilization: 2, rpsFractional: -5, eps: Infinity }), {
    cpuLoad: 100,
    inFlight: 0,
    qps: 0,
    eps: 0,
  });
  assert.equal(readOrcaLoad("not base64 of a report!"), undefined);
  assert.deepEqual(readOrcaLoad(encodeOrcaReport({ applicationUtilization: 0.25 })), {
    cpuLoad: 25,
    inFlight: 0,
    qps: 0,
    eps: 0,
  });
  assert.deepEqual(
    readOrcaLoad(encodeOrcaReport({ cpuUtilization: 0.5 }).toString("base64")),
    { cpuLoad: 50, inFlight: 0, qps: 0, eps: 0 },
  );
});

Deno.test("decodeOrcaRequestInterval reads the report_interval an OrcaLoadReportRequest asks for", () => {
  const Request = protobuf.parse(
    `syntax = "proto3";
    package xds.service.orca.v3;
    message Duration { int64 seconds = 1; int32 nanos = 2; }
    message OrcaLoadReportRequest {
      Duration report_interval = 1;
      repeated string request_cost_names = 2;
    }`,
    { keepCase: true },
  ).root.lookupType("xds.service.orca.v3.OrcaLoadReportRequest");
  const encode = (message: Record<string, unknown>) =>
    Request.encode(Request.fromObject(message)).finish();
  assert.equal(
    decodeOrcaRequestInterval(
      encode({ report_interval: { seconds: 2, nanos: 500_000_000 }, request_cost_names: ["x"] }),
    ),
    2_500,
  );
  assert.equal(decodeOrcaRequestInterval(encode({})), 0);
  assert.throws(() => decodeOrcaRequestInterval(new Uint8Array([0x0a, 0x05, 0x08])), RangeError);

  // What the balancer asks a server for, as protobufjs reads it.
  for (const [ms, seconds, nanos] of [[1_000, 1, 0], [2_500, 2, 500_000_000], [250, 0, 250e6]]) {
    const asked = Request.toObject(Request.decode(encodeOrcaRequest(ms)), { longs: Number });
    const expected = { ...(seconds ? { seconds } : {}), ...(nanos ? { nanos } : {}) };
    assert.deepEqual(asked.report_interval, expected);
    assert.equal(decodeOrcaRequestInterval(encodeOrcaRequest(ms)), ms);
  }
});
