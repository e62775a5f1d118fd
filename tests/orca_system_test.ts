/**
 * Load as gRPC's own backend metrics (ORCA, gRFC A51) tell it, between real processes: our
 * backends publish it per call and out of band, and the balancer takes it from a server that
 * reports no other way (a stock grpc-js server with per-call metrics, as a grpc-go or grpc-java
 * server with ORCA would send them).
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";
import { DEFAULT_ETCD_PREFIX } from "../lib/etcd/etcd_layout.ts";
import { HEALTH_DEFINITION } from "../lib/wire/grpc_health.ts";
import { decodeOrcaReport, ORCA_TRAILER, type OrcaReport } from "../lib/wire/orca.ts";
import { startSystem } from "./_harness.ts";
import { listServers, waitFor, waitForServers } from "./_system.ts";
import { bindServer } from "../lib/wire/grpc_server.ts";

/** grpc-js's own copy of the ORCA service definition. */
function orcaService(): grpc.ServiceClientConstructor {
  const proto = (dir: string) =>
    fileURLToPath(new URL(`../node_modules/@grpc/grpc-js/proto/${dir}`, import.meta.url));
  const definition = loadSync("xds/service/orca/v3/orca.proto", {
    keepCase: true,
    defaults: true,
    includeDirs: [proto("xds"), proto("protoc-gen-validate")],
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    xds: { service: { orca: { v3: { OpenRcaService: grpc.ServiceClientConstructor } } } };
  };
  return loaded.xds.service.orca.v3.OpenRcaService;
}

Deno.test("our backend tells its load as ORCA: in the trailers of its answers, and out of band on OpenRcaService", async () => {
  await using sys = await startSystem();
  const { backends } = await sys.balancerWithBackends({
    backends: 1,
    backendArgs: ["--service-time", "exp:5ms", "--workers", "2"],
  });
  const address = backends[0].address;
  const client = sys.backendClient(address);

  // Per call: the trailer of a task's answer, once a sample has seen tasks.
  const trailerOf = () =>
    new Promise<OrcaReport>((resolve, reject) => {
      const call = client.ProcessTask(
        { task_id: "orca", task_type: "CPU_HEAVY" },
        new grpc.Metadata(),
        {},
        (error) => error && reject(error),
      );
      call.on("status", (status: grpc.StatusObject) => {
        const [bytes] = status.metadata.get(ORCA_TRAILER) as Uint8Array[];
        resolve(decodeOrcaReport(bytes));
      });
    });
  const report = await waitFor(
    "a task's answer to report tasks per second",
    async () => {
      const r = await trailerOf();
      return r.rpsFractional! > 0 ? r : undefined;
    },
    10_000,
    50,
  );
  console.log(`[orca] ProcessTask trailer: ${JSON.stringify(report)}`);
  for (const key of ["cpuUtilization", "applicationUtilization", "rpsFractional", "eps"] as const) {
    assert.ok(report![key]! >= 0, `${key} in ${JSON.stringify(report)}`);
  }

  // Out of band: a stream of reports at the interval asked for.
  const OpenRcaService = orcaService();
  const oob = new OpenRcaService(address, grpc.credentials.createInsecure());
  const stream = oob.StreamCoreMetrics({ report_interval: { seconds: 1 } });
  const reports: Record<string, unknown>[] = [];
  stream.on("data", (r: Record<string, unknown>) => reports.push(r));
  stream.on("error", () => {});
  try {
    await waitFor("two out-of-band reports", () => reports.length >= 2, 10_000);
  } finally {
    stream.cancel();
    oob.close();
  }
  console.log(`[orca] OpenRcaService report: ${JSON.stringify(reports[1])}`);
  assert.ok(typeof reports[1].cpu_utilization === "number");
  assert.ok(typeof reports[1].application_utilization === "number");
  assert.ok(typeof reports[1].rps_fractional === "number");
});

Deno.test("a server that tells its load only as ORCA (per call, so in its health checks' answers) is listed with that load", async () => {
  await using sys = await startSystem({ etcd: true });
  const balancer = await sys.balancer(sys.onEtcd("--health-interval-ms", "200"));
  const lb = sys.lbClient(balancer.address);

  // Not ours: grpc-js with per-call backend metrics, recording its load into every call.
  const foreign = new grpc.Server({ "grpc.server_call_metric_recording": 1 });
  const Health = (grpc.loadPackageDefinition(HEALTH_DEFINITION) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  }).grpc.health.v1.Health;
  foreign.addService(Health.service, {
    Check: (call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>) => {
      const metrics = call.getMetricsRecorder();
      metrics.recordCPUUtilizationMetric(0.42);
      metrics.recordQpsMetric(12.5);
      metrics.recordEpsMetric(0.5);
      done(null, { status: "SERVING" });
    },
  });
  const port = await bindServer(foreign, "127.0.0.1", 0);
  sys.defer(() => foreign.forceShutdown());
  const address = `127.0.0.1:${port}`;
  await sys.etcdClient().put(`${DEFAULT_ETCD_PREFIX}${address}`).value(address);
  await waitForServers(lb, [address], 15_000);

  const listed = await waitFor("the balancer to list its ORCA load", async () => {
    const server = (await listServers(lb)).servers.find((s) => s.server_address === address);
    return server?.has_load ? server : undefined;
  }, 10_000);
  console.log(`[orca] foreign server as listed: ${JSON.stringify(listed)}`);
  assert.ok(Math.abs(listed!.cpu_load - 42) < 0.01, `cpu_load ${listed!.cpu_load}`);
  assert.ok(Math.abs(listed!.qps - 12.5) < 0.01, `qps ${listed!.qps}`);
});
