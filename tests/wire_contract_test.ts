/**
 * The original wire contract: stubs built from a verbatim copy of the original definition
 * (tests/fixtures/original_load_balancer.proto), never from our extended file, drive our real
 * balancer and backend processes.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { loadContract, unary } from "../lib/wire/proto.ts";
import { startSystem } from "./_harness.ts";
import { waitForTask } from "./_system.ts";

const original = loadContract(
  await Deno.readTextFile(new URL("./fixtures/original_load_balancer.proto", import.meta.url)),
);

Deno.test("original stubs register, report, look up and run tasks on our processes", async () => {
  await using sys = await startSystem();
  const balancer = await sys.balancer(["--policy", "round_robin"]);
  // A backend of ours, so ProcessTask is served; the original stub registers it by hand below,
  // as an original backend would, before the backend's own registration matters.
  const backend = sys.backend(["--balancer", "127.0.0.1:1"]);
  const lb = sys.lbClient(balancer.address, { contract: original });
  const be = sys.backendClient(backend.address, { contract: original });
  await waitForTask(be, "t-0", "SIMPLE"); // serving, as an original backend is when it registers
  const registered = await unary(lb.RegisterServer, lb, { server_address: backend.address });
  assert.deepEqual(registered, { success: true });
  const reported = await unary(lb.ReportLoad, lb, {
    server_address: backend.address,
    cpu_load: 12.5,
  });
  assert.deepEqual(reported, { success: true });
  const named = await unary(lb.GetServer, lb, { client_id: "original-client" });
  assert.deepEqual(named, { server_address: backend.address });

  const simple = await waitForTask(be, "t-1", "SIMPLE");
  assert.match(simple.result, /t-1/);
  const heavy = await unary(be.ProcessTask, be, { task_id: "t-2", task_type: "CPU_HEAVY" });
  assert.match(heavy.result, /t-2/);
  // Only the original's fields come back to an original stub.
  assert.deepEqual(Object.keys(heavy), ["result"]);
});

Deno.test("original stubs see UNAVAILABLE from GetServer while no server is known", async () => {
  await using sys = await startSystem();
  const balancer = await sys.balancer();
  const lb = sys.lbClient(balancer.address, { contract: original });
  await assert.rejects(
    unary(lb.GetServer, lb, { client_id: "c" }),
    (error: grpc.ServiceError) =>
      error.code === grpc.status.UNAVAILABLE && /no server/i.test(error.details),
  );
});
