/**
 * Load as gRPC's own backend metrics (ORCA, gRFC A51) tell it, between real processes: our
 * backends publish it per call and out of band, and the balancer takes it from servers that
 * report no other way (stock grpc-js servers, per call and out of band, as grpc-go and grpc-java
 * servers with ORCA send it).
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

Deno.test("servers that tell their load only as ORCA, per call (in their health checks' answers) or out of band, are listed with that load", async () => {
  await using sys = await startSystem({ etcd: true });
  const balancer = await sys.balancer(sys.onEtcd("--health-interval-ms", "200"));
  const lb = sys.lbClient(balancer.address);
  const Health = (grpc.loadPackageDefinition(HEALTH_DEFINITION) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  }).grpc.health.v1.Health;

  // Not ours: grpc-js with per-call backend metrics, recording its load into every call.
  const perCall = new grpc.Server({ "grpc.server_call_metric_recording": 1 });
  perCall.addService(Health.service, {
    Check: (call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>) => {
      const metrics = call.getMetricsRecorder();
      metrics.recordCPUUtilizationMetric(0.42);
      metrics.recordQpsMetric(12.5);
      metrics.recordEpsMetric(0.5);
      done(null, { status: "SERVING" });
    },
  });
  // Not ours either: grpc-js's own out-of-band service, as grpc-go's `orca.Register` or
  // grpc-java's `OrcaServiceImpl` serve it, and a health service that tells no load.
  const outOfBand = new grpc.Server();
  outOfBand.addService(Health.service, {
    Check: (_call: unknown, done: grpc.sendUnaryData<unknown>) => done(null, { status: "SERVING" }),
  });
  const recorder = new grpc.ServerMetricRecorder();
  recorder.setApplicationUtilizationMetric(0.25);
  recorder.setQpsMetric(3);
  recorder.addToServer(outOfBand);

  const addresses: string[] = [];
  for (const server of [perCall, outOfBand]) {
    const port = await bindServer(server, "127.0.0.1", 0);
    sys.defer(() => server.forceShutdown());
    const address = `127.0.0.1:${port}`;
    addresses.push(address);
    await sys.etcdClient().put(`${DEFAULT_ETCD_PREFIX}${address}`).value(address);
  }
  await waitForServers(lb, addresses, 15_000);

  const listed = async (address: string) =>
    await waitFor(`the balancer to list ${address}'s ORCA load`, async () => {
      const server = (await listServers(lb)).servers.find((s) => s.server_address === address);
      return server?.has_load ? server : undefined;
    }, 10_000);
  const [a, b] = [await listed(addresses[0]), await listed(addresses[1])];
  console.log(`[orca] per-call server as listed: ${JSON.stringify(a)}`);
  console.log(`[orca] out-of-band server as listed: ${JSON.stringify(b)}`);
  assert.ok(Math.abs(a!.cpu_load - 42) < 0.01, `cpu_load ${a!.cpu_load}`);
  assert.ok(Math.abs(a!.qps - 12.5) < 0.01, `qps ${a!.qps}`);
  assert.ok(Math.abs(b!.cpu_load - 25) < 0.01, `cpu_load ${b!.cpu_load}`);
  assert.ok(Math.abs(b!.qps - 3) < 0.01, `qps ${b!.qps}`);
});
