/**
 * The `grpc.health.v1` service, on its own and as the balancer and a backend serve it. The
 * balancer's checks of its servers (ejection and readmission) are tested under load as faults 1
 * and 2 in `fault_test.ts`.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import {
  check,
  createHealthClient,
  HealthService,
  type ServingStatus,
} from "../lib/wire/grpc_health.ts";
import { bindServer, createServer, shutdownServer } from "../lib/wire/grpc_server.ts";
import { startSystem } from "./_harness.ts";
import { waitFor } from "./_system.ts";

Deno.test("the health service answers Check and Watch as grpc.health.v1 specifies", async () => {
  const health = new HealthService(["", "svc"]);
  const server = createServer();
  health.addTo(server);
  const port = await bindServer(server, "127.0.0.1", 0);
  const client = createHealthClient(`127.0.0.1:${port}`);
  try {
    assert.equal(await check(client, "", 2_000), "NOT_SERVING");
    health.setAll("SERVING");
    assert.equal(await check(client, "svc", 2_000), "SERVING");
    await assert.rejects(
      check(client, "nope", 2_000),
      (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND && /nope/.test(e.details),
    );

    const seen: ServingStatus[] = [];
    const unknown: ServingStatus[] = [];
    const stream = client.Watch({ service: "svc" });
    const unknownStream = client.Watch({ service: "nope" });
    stream.on("data", (m: { status: ServingStatus }) => seen.push(m.status));
    unknownStream.on("data", (m: { status: ServingStatus }) => unknown.push(m.status));
    const ended = Promise.all(
      [stream, unknownStream].map((s) => new Promise((resolve) => s.on("status", resolve))),
    );
    await waitFor("the first Watch messages", () => seen.length === 1 && unknown.length === 1);
    health.set("svc", "NOT_SERVING");
    health.set("", "NOT_SERVING"); // another service: not sent to svc's watcher
    await waitFor("the change", () => seen.length === 2);
    assert.deepEqual(seen, ["SERVING", "NOT_SERVING"]);
    assert.deepEqual(unknown, ["SERVICE_UNKNOWN"]);
    health.close(); // ends every stream, so a graceful stop is not held up
    await ended;
  } finally {
    client.close();
    await shutdownServer(server, 1_000);
  }
});

Deno.test("the balancer is NOT_SERVING while it knows no server, and SERVING once it does", async () => {
  await using sys = await startSystem();
  const balancer = await sys.balancer();
  const health = createHealthClient(balancer.address);
  sys.defer(() => health.close());
  assert.equal(await check(health, "", 2_000), "NOT_SERVING");
  assert.equal(await check(health, "load_balancer.LoadBalancer", 2_000), "NOT_SERVING");
  const backend = sys.backend(["--balancer", balancer.address]);
  await waitFor("the balancer to serve", async () => {
    return await check(health, "", 2_000) === "SERVING";
  }, 15_000);
  const backendHealth = createHealthClient(backend.address);
  sys.defer(() => backendHealth.close());
  assert.equal(await check(backendHealth, "load_balancer.Backend", 2_000), "SERVING");
});
